"""The public surface is pinned, and the light packages never import the heavy ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import lean_backends
import lean_chain
import lean_cli
import lean_core
import lean_index

EXPECTED = {
    lean_core: {
        "CallRecord", "CostLedger", "EstimatedTokensWarning", "InvalidParameterError", "LayerSavings", "LeanInferenceError",
        "Layer", "LedgerCorruptError", "LedgerError", "LedgerPathError", "LedgerSummary",
        "MissingAssetError", "MissingExtraError", "ModelTotals", "PriceQuote", "SavingsEvent",
        "TokenCount", "TokenCounter", "TokenUsage", "UsageSource", "count_tokens",
        "default_ledger_path", "price_usage",
    },
    lean_chain: {"ChatLeanVLLM", "LeanBudget", "LeanCache", "LeanCompress", "LeanCostCallback",
                 "LeanDocumentCompressor", "LeanTemplate", "ChatModelPort", "lean_pipeline"},
    lean_index: {"LeanBudgetLLM", "LeanCachedLLM", "LeanCompressPostprocessor", "LeanCostHandler", "LeanTemplate",
                 "LeanVLLM", "LLMPort", "LeanPipelineQueryEngine"},
    lean_backends: {"EngineModel", "EngineStats", "LocalVLLMEngine", "PromptTooLongError", "RemoteEngineError",
                    "RemoteVLLMClient", "TextBackend", "VLLMEngineSettings", "VLLMOptions", "get_engine",
                    "ToolCall", "ToolCallDelta", "ToolCallOutputError", "ToolCallingChoice", "ToolCallingChunk",
                    "ToolRequest", "ToolSpec",
                    "resolve_model_dir", "shutdown_engines"},
    lean_cli: {"build_parser", "main"},
}


def test_public_names_are_pinned() -> None:
    for module, names in EXPECTED.items():
        assert set(module.__all__) == names, module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_moved_backend_helpers_warn_and_still_work() -> None:
    from lean_backends import local_generation

    with pytest.warns(DeprecationWarning, match="lean_backends.local_generation"):
        helper = lean_backends.generate_greedy
    assert helper is local_generation.generate_greedy


def test_light_packages_do_not_import_heavy_dependencies() -> None:
    code = (
        "import sys, json; import lean_core, lean_chain, lean_index, lean_backends, lean_cli; "
        "from lean_core import CostLedger, TokenCounter, count_tokens; "
        "from lean_chain import LeanCostCallback; from lean_index import LeanCostHandler; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch','vllm','transformers','llmlingua','gptcache','sentence_transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_counting_openai_tokens_does_not_import_torch() -> None:
    code = (
        "import sys; from lean_core import count_tokens; count_tokens('hello world', 'gpt-4'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"

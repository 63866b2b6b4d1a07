"""Pruning plans, bad input caught before any work, the CLI surface, and a tiny end-to-end prune."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lean_backends.pruning.calibration import load_calibration
from lean_backends.pruning.spec import (
    ModelShape,
    PruningPlan,
    UnsupportedArchitectureError,
    parse_layer_list,
)
from lean_core.errors import InvalidParameterError

SMOL = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30, "hidden_size": 576,
        "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
        "tie_word_embeddings": True}
SHAPE = ModelShape.from_config(SMOL)


def test_shape_of_smollm2() -> None:
    assert (SHAPE.num_layers, SHAPE.heads_per_group, SHAPE.head_dim, SHAPE.tied_embeddings) == (30, 3, 64, True)


@pytest.mark.parametrize("config", [{**SMOL, "model_type": "gpt2"}, {**SMOL, "model_type": "mixtral"},
                                    {**SMOL, "architectures": ["LlamaForSequenceClassification"]}])
def test_unsupported_architectures_name_the_supported_ones(config: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="llama, mistral, qwen2, qwen3") as caught:
        ModelShape.from_config(config)
    assert isinstance(caught.value, InvalidParameterError)


@pytest.mark.parametrize(("plan", "parameter"), [
    (dict(drop_layers=30), "drop_layers"), (dict(drop_layers=31), "drop_layers"),
    (dict(layers=tuple(range(30))), "drop_layers"), (dict(layers=(30,)), "layers"),
    (dict(mlp_size=2000), "mlp_size"), (dict(heads_per_group=4), "heads_per_group"),
])
def test_plans_that_do_not_fit_the_model(plan: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        PruningPlan(**plan).check(SHAPE)
    assert caught.value.parameter == parameter


@pytest.mark.parametrize(("plan", "parameter"), [
    (dict(), "plan"), (dict(drop_layers=-1), "drop_layers"), (dict(mlp_size=0), "mlp_size"),
    (dict(heads_per_group=0), "heads_per_group"), (dict(drop_layers=2, layers=(1,)), "layers"),
    (dict(layers=(3, 3)), "layers"),
])
def test_invalid_plans(plan: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        PruningPlan(**plan)
    assert caught.value.parameter == parameter


def test_valid_plan_and_layer_lists() -> None:
    PruningPlan(drop_layers=29, mlp_size=1536, heads_per_group=3).check(SHAPE)
    assert parse_layer_list("3, 7,12") == (3, 7, 12)
    with pytest.raises(InvalidParameterError, match="layers"):
        parse_layer_list("3,x")


def test_calibration_rules(tmp_path: Path, smollm2_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Emma Woodhouse, handsome, clever, and rich.")
    with pytest.raises(InvalidParameterError, match="at least 1000 tokens"):
        load_calibration([short], tokenizer_dir=smollm2_path, min_tokens=1000)
    wiki = tmp_path / "wikitext-2-raw-v1.test.joined.txt"
    wiki.write_text("x " * 5000)
    with pytest.raises(InvalidParameterError, match="WikiText"):
        load_calibration([wiki], tokenizer_dir=smollm2_path, min_tokens=10)
    with pytest.raises(InvalidParameterError, match="existing text files"):
        load_calibration([tmp_path / "missing-*.txt"], tokenizer_dir=smollm2_path, min_tokens=10)
    calib = load_calibration([short, str(tmp_path / "sho*.txt")], tokenizer_dir=smollm2_path, min_tokens=10)
    assert calib.tokens > 10 and len(calib.paths) == 2


def tiny_checkpoint(path: Path, smollm2_path: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model("llama", vocab_size=49152, hidden_size=48, intermediate_size=48,
                                  num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2, head_dim=8,
                                  max_position_embeddings=128, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(path))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2_path / name, path / name)
    return path


def test_tiny_prune_writes_a_plain_checkpoint_with_its_record(tmp_path: Path, smollm2_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from lean_backends.pruning import prune_checkpoint

    source = tiny_checkpoint(tmp_path / "tiny", smollm2_path)
    calib = tmp_path / "calib.txt"
    calib.write_text(" ".join(f"Sentence {i} of the calibration story goes here." for i in range(300)))
    result = prune_checkpoint(source, tmp_path / "out", plan=PruningPlan(drop_layers=1, mlp_size=32, heads_per_group=2),
                              calibration=[calib], calibration_tokens=256, seq_len=32, heal_steps=2,
                              heal_options={"batch_size": 2}, show_progress=False)
    out = tmp_path / "out"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja",
            "pruning.json"} <= {p.name for p in out.iterdir()}
    assert not (tmp_path / "out.heal-state").exists() and not (tmp_path / "out.partial").exists()
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["intermediate_size"], config["num_attention_heads"],
            config["head_dim"], config["tie_word_embeddings"]) == (3, 32, 4, 8, True)
    record = json.loads((out / "pruning.json").read_text())
    assert record["removed"]["layers"] == list(result.dropped_layers) and record["healing"]["steps"] == 2
    assert record["params_after"] == result.params_after < result.params_before
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied


def test_bad_input_fails_before_any_model_is_loaded(tmp_path: Path, smollm2_path: Path) -> None:
    from lean_backends.pruning import prune_checkpoint

    source = tiny_checkpoint(tmp_path / "tiny", smollm2_path)
    (tmp_path / "exists").mkdir()
    short = tmp_path / "short.txt"
    short.write_text("Too short.")
    cases = [
        (dict(out=tmp_path / "exists", plan=PruningPlan(drop_layers=1)), "out"),
        (dict(out=tmp_path / "o1", plan=PruningPlan(drop_layers=4)), "drop_layers"),
        (dict(out=tmp_path / "o2", plan=PruningPlan(heads_per_group=4)), "heads_per_group"),
        (dict(out=tmp_path / "o3", plan=PruningPlan(drop_layers=1), calibration=[short]), "calibration"),
    ]
    for kwargs, parameter in cases:
        with pytest.raises(InvalidParameterError) as caught:
            prune_checkpoint(source, **kwargs)  # type: ignore[arg-type]
        assert caught.value.parameter == parameter
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    with pytest.raises(UnsupportedArchitectureError):
        prune_checkpoint(source, tmp_path / "o4", plan=PruningPlan(drop_layers=1))


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real ``lean-inference`` entry point, in a fresh interpreter."""
    code = "import sys; from lean_cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


def test_cli_help_documents_every_option() -> None:
    text = _cli("prune", "--help").stdout
    for option in ("--out", "--drop-layers", "--layers", "--mlp-size", "--heads-per-group", "--calibration",
                   "--heal-steps", "--heal-mode", "--heal-resume", "--adapter", "--device",
                   "llama, mistral, qwen2, qwen3"):
        assert option in text
    bench = _cli("bench", "prune", "--help").stdout
    for option in ("--model", "--text", "--out", "--max-windows", "--skip-windows", "--baseline"):
        assert option in bench


def test_perplexity_windows_skip_then_take(tmp_path: Path, smollm2_path: Path) -> None:
    from lean_backends.pruning.perplexity import wikitext_windows

    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"Line {i} of a held-out evaluation text." for i in range(200)))
    every = wikitext_windows(text, smollm2_path, window=64)
    assert len(every) >= 6
    assert wikitext_windows(text, smollm2_path, window=64, skip_windows=2, max_windows=3) == every[2:5]
    assert wikitext_windows(text, smollm2_path, window=64, skip_windows=len(every) - 1) == every[-1:]
    for bad in (-1, len(every), 1.5, True):
        with pytest.raises(InvalidParameterError) as caught:
            wikitext_windows(text, smollm2_path, window=64, skip_windows=bad)  # type: ignore[arg-type]
        assert caught.value.parameter == "skip_windows"


def test_cli_full_weight_healing_trains_the_layers_and_keeps_the_embedding(tmp_path: Path,
                                                                          smollm2_path: Path) -> None:
    from safetensors.torch import load_file

    source = tiny_checkpoint(tmp_path / "tiny", smollm2_path)
    calib = tmp_path / "calib.txt"
    calib.write_text(" ".join(f"Sentence {i} of the calibration story goes here." for i in range(300)))
    common = ("--drop-layers", "1", "--calibration", str(calib), "--calibration-tokens", "256", "--seq-len", "32",
              "--quiet")
    plain = _cli("prune", str(source), "--out", str(tmp_path / "plain"), *common)
    healed = _cli("prune", str(source), "--out", str(tmp_path / "full"), *common, "--heal-steps", "2",
                  "--heal-batch", "2", "--heal-mode", "full")
    assert plain.returncode == 0 and healed.returncode == 0, plain.stderr + healed.stderr
    record = json.loads((tmp_path / "full" / "pruning.json").read_text())["healing"]
    assert record["settings"]["mode"] == "full" and "every weight" in record["method"]
    before = load_file(str(tmp_path / "plain" / "model.safetensors"))
    after = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert before["model.embed_tokens.weight"].equal(after["model.embed_tokens.weight"])
    assert not before["model.layers.0.mlp.down_proj.weight"].equal(after["model.layers.0.mlp.down_proj.weight"])
    bad = _cli("prune", str(source), "--out", str(tmp_path / "bad"), *common, "--heal-steps", "2",
               "--heal-mode", "dora")
    assert bad.returncode != 0 and "--heal-mode" in bad.stderr and "lora" in bad.stderr


def test_cli_rejects_bad_input_with_a_named_parameter(tmp_path: Path, smollm2_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    done = _cli("prune", str(smollm2_path), "--out", str(tmp_path / "exists"), "--drop-layers", "2")
    assert done.returncode == 2 and "invalid out" in done.stderr
    done = _cli("prune", str(smollm2_path), "--out", str(tmp_path / "new"), "--heads-per-group", "4")
    assert done.returncode == 2 and "heads_per_group" in done.stderr and "received 4" in done.stderr
    done = _cli("prune", str(smollm2_path), "--out", str(tmp_path / "new"))
    assert done.returncode == 2 and "at least one of" in done.stderr


def test_importing_the_pruning_package_stays_light() -> None:
    code = ("import sys, json; import lean_backends.pruning as p; from lean_backends.pruning import PruningPlan; "
            "print(json.dumps(['torch' in sys.modules, 'transformers' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]


def test_heal_module_imports_nothing_from_lean_core_or_pydantic() -> None:
    repo = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path.insert(0, {str(repo / 'backends')!r}); "
            "from pruning import heal, surgery; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'lean_core', 'lean_backends')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_cli_adapter_merge_needs_the_pruned_checkpoint_and_no_pruning_options(tmp_path: Path,
                                                                               smollm2_path: Path) -> None:
    adapter = tmp_path / "adapter.safetensors"
    done = _cli("prune", str(smollm2_path), "--out", str(tmp_path / "new"), "--adapter", str(adapter))
    assert done.returncode == 2 and "invalid MODEL" in done.stderr and "pruning.json" in done.stderr
    done = _cli("prune", str(smollm2_path), "--out", str(tmp_path / "new"), "--adapter", str(adapter),
                "--drop-layers", "2")
    assert done.returncode == 2 and "invalid --adapter" in done.stderr

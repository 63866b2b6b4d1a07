"""Convert a llama-architecture GGUF file into a plain Hugging Face checkpoint directory.

transformers dequantizes GGUF weights on load but then refuses ``save_pretrained`` because the
config still carries the GGUF quantization config; rebuilding a clean model from the config
without it and loading the dequantized state dict gives a standard checkpoint that transformers,
llmlingua and vLLM all load.
"""

from __future__ import annotations

from pathlib import Path

from lean_core._extras import require

__all__ = ["convert_gguf_to_hf"]


def convert_gguf_to_hf(gguf: Path, out_dir: Path, *, show_progress: bool = True) -> Path:
    """Write ``out_dir`` (safetensors float32, config, tokenizer, chat template) from ``gguf``."""
    from tqdm.auto import tqdm

    torch = require("torch", extra="models", feature="Converting the bundled SmolLM2 model")
    transformers = require("transformers", extra="models", feature="Converting the bundled SmolLM2 model")
    require("gguf", extra="models", feature="Reading GGUF files")

    steps = tqdm(total=4, desc="Preparing SmolLM2-135M-Instruct (one time)", unit="step",
                 disable=not show_progress)
    with steps:
        steps.set_postfix_str("dequantizing GGUF")
        quantized = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        steps.update()

        steps.set_postfix_str("rebuilding a clean checkpoint")
        config = quantized.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.dtype = torch.float32
        model_class = type(quantized)
        clean = model_class(config)
        missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
        # Tied embeddings legitimately appear as "missing" lm_head weights.
        real_missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if real_missing or unexpected:
            raise RuntimeError(
                f"GGUF conversion of {gguf} lost weights: missing={real_missing} unexpected={unexpected}"
            )
        clean.tie_weights()
        steps.update()

        steps.set_postfix_str("writing safetensors")
        out_dir.mkdir(parents=True, exist_ok=True)
        clean.save_pretrained(str(out_dir), safe_serialization=True)
        steps.update()

        steps.set_postfix_str("writing tokenizer and chat template")
        tokenizer.save_pretrained(str(out_dir))
        generation_config = clean.generation_config
        generation_config.save_pretrained(str(out_dir))
        steps.update()
    return out_dir

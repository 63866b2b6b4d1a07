"""Shared test set-up: offline by construction.

Every test runs with the Hugging Face hub switched off and with a socket guard that refuses any
connection outside the loopback range, so a test that tried to download anything fails loudly.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.openai_stub import OpenAIStub

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX
        return True
    host = address[0] if isinstance(address, tuple) else None
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False


class NetworkAccessError(RuntimeError):
    pass


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        raise NetworkAccessError(f"test tried to reach {address!r}: only loopback is allowed")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        raise NetworkAccessError(f"test tried to reach {address!r}: only loopback is allowed")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield


@pytest.fixture(scope="session", autouse=True)
def _engines_stop_inside_the_run() -> Iterator[None]:
    """Stop vLLM engines in the last test's teardown, where output is still captured. Left to the
    atexit hook, they stop after pytest has closed the capture stream that vLLM's logger writes to,
    and every shutdown log line ends the run as a "--- Logging error ---" block."""
    yield
    engines = sys.modules.get("lean_backends.vllm_engine")  # never import vLLM just to stop nothing
    if engines is not None:
        engines.shutdown_engines()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real converted SmolLM2 checkpoint (converted once per machine, ~25 s)."""
    from lean_core.assets import smollm2_dir

    return smollm2_dir(show_progress=False)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    """A loopback OpenAI-compatible endpoint (see tests/support/openai_stub.py)."""
    with OpenAIStub() as server:
        yield server

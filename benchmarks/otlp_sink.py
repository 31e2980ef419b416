"""A local OTLP/HTTP receiver for benchmarks with tracing on: answers every POST to
/v1/traces with 200 and counts the requests and bytes, so the exporter does its whole
job (encode, send) and nothing leaves the machine.

    python benchmarks/otlp_sink.py 4318     # then OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0
    received_bytes = 0


class Receiver(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        self.server.received_bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_sink(port: int = 0) -> Sink:
    """A sink on 127.0.0.1 serving from a daemon thread; its URL is `endpoint(sink)`."""
    sink = Sink(("127.0.0.1", port), Receiver)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    return sink


def endpoint(sink: Sink) -> str:
    return f"http://127.0.0.1:{sink.server_address[1]}"


if __name__ == "__main__":
    sink = start_sink(int(sys.argv[1]) if len(sys.argv) > 1 else 4318)
    print(f"OTLP sink on {endpoint(sink)}; Ctrl+C stops it", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print(f"{sink.requests} requests, {sink.received_bytes:,} bytes", file=sys.stderr)

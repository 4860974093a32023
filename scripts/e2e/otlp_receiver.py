"""A minimal OTLP/HTTP trace receiver: decodes every POST /v1/traces with the official
opentelemetry-proto schema (gzip bodies too) and keeps the spans, and the headers of the first
export, in memory (or counts them). With `tls=(cert, key)` it serves https.

As a module: `Receiver().start(tls=...)` → port; `.spans()` → list of dicts; `.headers` → dict.
As a program: `python3 otlp_receiver.py PORT` serves until killed and prints a count every 10 s.
Needs: pip install opentelemetry-proto protobuf
"""

import gzip
import http.server
import ssl
import sys
import threading
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver:
    def __init__(self):
        self._spans = []
        self._lock = threading.Lock()
        self.requests = 0
        self.bad = 0
        self.headers = None

    def spans(self):
        with self._lock:
            return list(self._spans)

    def _ingest(self, body):
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        out = []
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "resource": resource,
                            "scope": ss.scope.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": {kv.key: _value(kv.value) for kv in s.attributes},
                            "links": [(l.trace_id.hex(), l.span_id.hex()) for l in s.links],
                            "status": s.status.code,
                        }
                    )
        with self._lock:
            self._spans.extend(out)
            self.requests += 1

    def start(self, port=0, tls=None):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if receiver.headers is None:
                    receiver.headers = {k.lower(): v for k, v in self.headers.items()}
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                try:
                    if ok:
                        receiver._ingest(body)
                except Exception:  # noqa: BLE001 - a bad payload is a test failure, counted
                    ok = False
                if not ok:
                    receiver.bad += 1
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]


if __name__ == "__main__":
    r = Receiver()
    port = r.start(int(sys.argv[1]) if len(sys.argv) > 1 else 4318)
    print(f"OTLP/HTTP receiver on 127.0.0.1:{port}", flush=True)
    while True:
        time.sleep(10)
        print(f"{len(r.spans())} spans in {r.requests} exports, {r.bad} refused", flush=True)

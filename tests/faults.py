"""Fault injection for the tests: a registry front that answers 500 or goes away on demand."""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FaultPlan:
    """What the front does with each request it is asked to forward."""

    fail_next: int = 0  # answer 500 to this many requests, then forward again
    fail_always: bool = False
    fail_paths: tuple[str, ...] = ()  # only requests whose path contains one of these fail
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def should_fail(self, path: str) -> bool:
        if self.fail_paths and not any(p in path for p in self.fail_paths):
            return False
        with self.lock:
            if self.fail_always:
                self.failed += 1
                return True
            if self.fail_next > 0:
                self.fail_next -= 1
                self.failed += 1
                return True
        return False


class RegistryFront:
    """An HTTP proxy on 127.0.0.1 in front of the real registry, with faults on demand."""

    def __init__(self, upstream_port: int = 5000) -> None:
        self.plan = FaultPlan()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if front.plan.should_fail(self.path):
                    body = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                if payload is None and self.headers.get("Transfer-Encoding") == "chunked":
                    payload = _read_chunked(self.rfile)
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                # Join repeated headers: a registry reads every Accept line to pick the manifest type.
                headers: dict[str, str] = {}
                for key, value in self.headers.items():
                    if key.lower() not in ("host", "transfer-encoding"):
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                headers["Host"] = self.headers.get("Host", f"127.0.0.1:{upstream_port}")
                if payload is not None:
                    headers["Content-Length"] = str(len(payload))
                upstream.request(self.command, self.path, body=payload, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                # A HEAD answer has no body, but its length is the manifest's size.
                length = reply.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def start(self) -> RegistryFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _read_chunked(stream: object) -> bytes:
    data = b""
    read_line = stream.readline  # type: ignore[attr-defined]
    read = stream.read  # type: ignore[attr-defined]
    while True:
        size = int(read_line().strip() or b"0", 16)
        if size == 0:
            read_line()
            return data
        data += read(size)
        read_line()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0

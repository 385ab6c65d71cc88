"""envtasks' demo app: says which environment and version it runs, standard library only."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def greeting() -> dict[str, str]:
    return {
        "env": os.environ.get("ENVTASKS_ENV", "unknown"),
        "version": os.environ.get("ENVTASKS_VERSION", os.environ.get("APP_VERSION", "unknown")),
        "greeting": os.environ.get("GREETING", "hello"),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, b"ok\n", "text/plain")
        elif self.path == "/":
            self.reply(200, (json.dumps(greeting()) + "\n").encode(), "application/json")
        else:
            self.reply(404, b"not found\n", "text/plain")

    def reply(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    # docker stop sends SIGTERM: shut down at once instead of waiting for SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on :{port} as {greeting()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

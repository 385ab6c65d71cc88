"""Where one invoke command spends its time: start-up, then every engine request it makes.

Run it where ``invoke`` would run, with the same arguments:

    cd PROJECT && /path/to/.venv/bin/python /path/to/bench/engine_calls.py deploy --env=dev

It prints to stderr the moment each stage ends and each engine request (method, path, how
long it took), then the count of requests; the command's own output goes to stdout.
Each request to an ssh:// engine costs a round trip, so the count matters more than the
milliseconds measured here on a local socket.
"""

from __future__ import annotations

import atexit
import sys
import time
from typing import Any

STARTED = time.monotonic()


def mark(what: str) -> None:
    print(f"[{(time.monotonic() - STARTED) * 1000:7.1f} ms] {what}", file=sys.stderr)


def main() -> None:
    import invoke

    mark(f"invoke {invoke.__version__} imported")
    import envtasks  # noqa: F401  (what a project's tasks.py loads)

    mark("envtasks imported (with docker-py and requests)")
    import requests

    requests_made: list[str] = []
    send = requests.Session.send

    def timed_send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return send(session, request, **kwargs)
        finally:
            path = str(request.url).split("/", 3)[-1].split("?", 1)[0]
            requests_made.append(path)
            took = (time.monotonic() - started) * 1000
            mark(f"  {request.method} /{path[:90]}  ({took:.1f} ms)")

    requests.Session.send = timed_send  # type: ignore[method-assign]
    atexit.register(lambda: mark(f"exit after {len(requests_made)} engine requests"))
    from invoke.main import program

    sys.argv = ["invoke", *sys.argv[1:]]
    program.run()


if __name__ == "__main__":
    main()

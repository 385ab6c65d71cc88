"""How much does envtasks' deploy cost over the raw docker commands a person would type?

Runs both side by side in one run (this machine is shared and noisy), alternating
rounds, and prints the ratio of medians. Also prints the no-op redeploy time, the
rollback time, and the serving gap of a deploy (the longest stretch with no
successful answer while polling every 20 ms).

    .venv/bin/python bench/deploy_overhead.py [ROUNDS] [busybox|demo]

busybox (the default): a busybox httpd, healthy the moment it starts, so the figures show
envtasks' fixed cost at its largest. demo: the project's own demo app (app/server.py on
the Python base image), a small real app.

Needs what scripts/setup.sh starts: the engine, the registry on 127.0.0.1:5000, busybox,
and for demo the base image envtasks/python-base:bookworm.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY www /www
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url} never became healthy")


class GapMeter:
    """Polls a URL every 20 ms and records the longest stretch without a 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self.polls = 0
        self.failures = 0
        self._stop = threading.Event()
        self._serving = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=0.2) as reply:
                    ok = reply.status == 200
            except OSError:
                ok = False
            now = time.monotonic()
            self.polls += 1
            self.failures += not ok
            if ok:
                self.longest = max(self.longest, now - last_ok)
                last_ok = now
                self._serving.set()
            else:
                self._serving.clear()
            time.sleep(0.02)

    def __enter__(self) -> GapMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # A gap only ends with an answer: wait for one before stopping.
        self._serving.clear()
        self._serving.wait(timeout=10)
        self._stop.set()
        self._thread.join()


def write_app(work: Path, kind: str, image: str) -> Callable[[str], None]:
    """Writes the app and its base env; returns what makes a version differ from the last."""
    if kind == "demo":
        project = Path(__file__).resolve().parents[1]
        (work / "app").mkdir()
        shutil.copy(project / "Dockerfile", work / "Dockerfile")
        shutil.copy(project / ".dockerignore", work / ".dockerignore")
        source = (project / "app/server.py").read_text()
        build_args = "ENVTASKS_BUILD_ARGS=BASE_IMAGE=envtasks/python-base:bookworm\n"

        def mark(version: str) -> None:
            (work / "app/server.py").write_text(f"{source}\n# {version}\n")

    else:
        (work / "www").mkdir()
        (work / "Dockerfile").write_text(DOCKERFILE)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", work / "busybox")
        (work / "www/healthz").write_text("ok\n")
        build_args = ""

        def mark(version: str) -> None:
            (work / "www/version").write_text(version)

    (work / "envs/base.env").write_text(
        f"ENVTASKS_IMAGE={image}\n{build_args}ENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_KEEP=3\n"
    )
    return mark


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    kind = sys.argv[2] if len(sys.argv) > 2 else "busybox"
    if kind not in ("busybox", "demo"):
        raise SystemExit(f"no app {kind!r}: busybox or demo")
    work = Path(tempfile.mkdtemp(prefix="envtasks-bench-"))
    name = f"bench-{uuid.uuid4().hex[:8]}"
    image = f"localhost:5000/{name}"
    port_envtasks, port_raw = free_port(), free_port()
    (work / "envs").mkdir()
    (work / "tasks.py").write_text("from envtasks import ns\n")
    mark_version = write_app(work, kind, image)
    (work / "envs/bench.env").write_text(f"ENVTASKS_PORTS=127.0.0.1:{port_envtasks}:8080\n")
    invoke = [sys.executable, "-m", "invoke"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVTASKS_")}

    def run_invoke(*args: str) -> float:
        started = time.monotonic()
        done = subprocess.run(
            [*invoke, *args], cwd=work, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"invoke {' '.join(args)} failed: {done.stderr.strip()}")
        return time.monotonic() - started

    versions = [f"v{i}" for i in range(rounds + 1)]
    digests = {}
    print(f"building and pushing {len(versions)} versions ...", flush=True)
    for version in versions:
        mark_version(version)
        out = subprocess.run(
            [*invoke, "build", f"--version={version}", "push"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        digests[version] = out.strip().splitlines()[-1].split(":", 2)[-1].split("@", 1)[1]

    health_envtasks = f"http://127.0.0.1:{port_envtasks}/healthz"
    health_raw = f"http://127.0.0.1:{port_raw}/healthz"
    run_invoke("deploy", "--env=bench", f"--version={versions[0]}")

    def raw_run(version: str) -> str:
        """The raw command a person would type to start a version."""
        container = f"{name}-raw-{version}"
        ref = f"{image}@{digests[version]}"
        sh(
            "docker",
            "run",
            "-d",
            "--init",
            "--name",
            container,
            "-p",
            f"127.0.0.1:{port_raw}:8080",
            ref,
        )
        return container

    raw_current = raw_run(versions[0])
    healthy(health_raw)

    envtasks_times, raw_times, gaps, bounds = [], [], [], []
    floor = []
    try:
        for version in versions[1:]:
            with GapMeter(health_envtasks) as meter:
                envtasks_times.append(run_invoke("deploy", "--env=bench", f"--version={version}"))
            gaps.append(meter.longest)
            print(f"  {version}: {meter.polls} polls, {meter.failures} failed", flush=True)

            started = time.monotonic()
            # The old container holds the host port, so it must stop before the new one starts.
            sh("docker", "stop", raw_current)
            new = raw_run(version)
            healthy(health_raw)
            raw_times.append(time.monotonic() - started)
            raw_current = new

            # What any task costs before it can talk to the engine, against two docker CLI starts.
            floor.append(run_invoke("--list"))
            started = time.monotonic()
            sh("docker", "--version")
            sh("docker", "--version")
            raw_engine = raw_times[-1] - (time.monotonic() - started)
            bounds.append((floor[-1] + raw_engine) / raw_times[-1])
        noop = [run_invoke("deploy", "--env=bench", f"--version={versions[-1]}") for _ in range(3)]
        rollback = run_invoke("rollback", "--env=bench")
    finally:
        for container in sh("docker", "ps", "-aq", "--filter", f"name={name}").split():
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)

    envtasks_median = statistics.median(envtasks_times)
    raw_median = statistics.median(raw_times)
    print(f"app: {kind}, rounds: {rounds}")
    print(
        f"envtasks deploy   median {envtasks_median:.2f}s  ({', '.join(f'{t:.2f}' for t in envtasks_times)})"
    )
    print(
        f"raw docker        median {raw_median:.2f}s  ({', '.join(f'{t:.2f}' for t in raw_times)})"
    )
    print(f"ratio envtasks/raw: {envtasks_median / raw_median:.2f}x  (goal: <= 1.3x)")
    startup = statistics.median(floor)
    print(
        f"invoke start-up   median {startup:.2f}s (`invoke --list` here: Python, Invoke, docker-py; no engine call)"
    )
    print(
        f"lower bound       {statistics.median(bounds):.2f}x (median of rounds) for any task started by invoke that "
        "does the raw engine work and nothing more"
    )
    print(f"no-op redeploy    median {statistics.median(noop):.2f}s (whole invoke process)")
    print(f"rollback          {rollback:.2f}s")
    print(
        f"serving gap       median {statistics.median(gaps) * 1000:.0f} ms, worst {max(gaps) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()

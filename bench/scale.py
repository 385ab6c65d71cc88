"""Deploy time to 1, 2 and 3 engines, and to 1, 2 and 4 Swarm replicas, as ratios.

Engines run in parallel, so several should cost little more than one (goal: <= 1.5x).
Extra engines are real dockerds started here (as the tests do); Swarm mode is entered
for the run and left after, unless it was on already.

    .venv/bin/python bench/scale.py [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from extra_engines import SecondEngine, start_second_engine

MAIN = "unix:///var/run/docker.sock"
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.image = f"localhost:5000/scale-{uuid.uuid4().hex[:8]}"
        (root / "www").mkdir(parents=True)
        (root / "envs").mkdir()
        (root / "www/healthz").write_text("ok\n")
        (root / "Dockerfile").write_text(DOCKERFILE)
        (root / "tasks.py").write_text("from envtasks import ns\n")
        shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "busybox")
        (root / "envs/base.env").write_text(
            f"ENVTASKS_IMAGE={self.image}\nENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_HEALTH_TIMEOUT=2\n"
        )
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVTASKS_")}

    def env_file(self, name: str, text: str) -> None:
        (self.root / f"envs/{name}.env").write_text(text)

    def invoke(self, *args: str) -> float:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.root,
            env=self.environ,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"invoke {' '.join(args)} failed: {done.stderr.strip()}")
        return time.monotonic() - started


def median_deploy(project: Project, env: str, rounds: int) -> float:
    times = []
    for index in range(rounds):
        times.append(project.invoke("deploy", f"--env={env}", f"--version=v{index % 2}"))
    return statistics.median(times)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    work = Path(tempfile.mkdtemp(prefix="envtasks-scale-"))
    project = Project(work / "project")
    for version in ("v0", "v1"):
        (project.root / "www/version").write_text(version)
        project.invoke("build", f"--version={version}", "push")
    engines: list[SecondEngine] = []
    entered_swarm = False
    try:
        engines = [start_second_engine(work / f"engine{i}", i) for i in (2, 3)]
        hosts = [MAIN, *(e.address for e in engines)]
        engine_medians = {}
        for count in (1, 2, 3):
            env = f"engines{count}"
            project.env_file(
                env,
                f"ENVTASKS_PORTS=127.0.0.1::8080\nENVTASKS_DOCKER_HOST={','.join(hosts[:count])}\n",
            )
            engine_medians[count] = median_deploy(project, env, rounds)

        state = subprocess.run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if state != "active":
            subprocess.run(
                ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                capture_output=True,
                check=True,
            )
            entered_swarm = True
        replica_medians = {}
        for replicas in (1, 2, 4):
            env = f"replicas{replicas}"
            project.env_file(
                env, f"ENVTASKS_TARGET=swarm\nENVTASKS_PORTS=:8080\nENVTASKS_REPLICAS={replicas}\n"
            )
            project.invoke("deploy", f"--env={env}", "--version=v1")  # create; then time updates
            replica_medians[replicas] = median_deploy(project, env, rounds)
            subprocess.run(
                ["docker", "service", "rm", f"{project.image.rsplit('/', 1)[1]}-{env}"],
                capture_output=True,
                check=False,
            )
    finally:
        name = project.image.rsplit("/", 1)[1]
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name={name}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
        for engine in engines:
            engine.stop()
        if entered_swarm:
            subprocess.run(
                ["docker", "swarm", "leave", "--force"], capture_output=True, check=False
            )
        shutil.rmtree(work, ignore_errors=True)

    one = engine_medians[1]
    print(f"rounds per case: {rounds}; each a deploy of a new version, container target")
    for count, median in engine_medians.items():
        print(f"  {count} engine(s): median {median:.2f}s  ratio {median / one:.2f}x")
    print(
        f"  goal: several engines <= 1.5x one engine -> {max(engine_medians.values()) / one:.2f}x"
    )
    base = replica_medians[1]
    print("swarm target, rolling update one task at a time (includes the monitor window):")
    for replicas, median in replica_medians.items():
        print(
            f"  {replicas} replica(s): median {median:.2f}s  ratio {median / base:.2f}x to 1 replica, "
            f"{median / one:.2f}x to one engine"
        )


if __name__ == "__main__":
    main()

"""A busybox httpd app in a temp project, deployed for real by the engine tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from helpers import Done, Project

CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "env=$ENVTASKS_ENV version=$ENVTASKS_VERSION greeting=$GREETING"
"""


def release_version(project: Project, version: str, healthy: bool = True) -> None:
    """Build and push ``version`` of a busybox app; an unhealthy one has no /healthz."""
    health = project.root / "www/healthz"
    if healthy:
        health.write_text("ok\n")
    elif health.exists():
        health.unlink()
    (project.root / "www/version").write_text(version + "\n")
    done = project.invoke("build", f"--version={version}", "push")
    assert done.code == 0, done.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class App:
    """A busybox httpd app in a temp project, with one port per env."""

    def __init__(self, project: Project, docker_client: object) -> None:
        self.project = project
        self.docker = docker_client
        self.name = project.image.rsplit("/", 1)[-1]
        self.ports = {"dev": free_port(), "prod": free_port()}
        project.write("www/cgi-bin/env", CGI)
        (project.root / "www/cgi-bin/env").chmod(0o755)
        self.set_env("dev", "GREETING=hi from dev\n")
        self.set_env("prod", "GREETING=hi from prod\nDB_PASSWORD=s3cr3t-prod-pw\n")
        project.write(
            "envs/base.env",
            f"ENVTASKS_IMAGE={project.image}\nENVTASKS_HEALTHCHECK=/healthz\n"
            "ENVTASKS_HEALTH_TIMEOUT=8\nGREETING=hello\n",
        )
        project.commit("app")

    def set_env(self, env: str, text: str) -> None:
        self.project.write(
            f"envs/{env}.env", f"ENVTASKS_PORTS=127.0.0.1:{self.ports[env]}:8080\n{text}"
        )

    def release(self, version: str, healthy: bool = True) -> None:
        release_version(self.project, version, healthy)

    def invoke(self, *args: str, env: dict[str, str] | None = None) -> Done:
        return self.project.invoke(*args, env=env)

    def answer(self, env: str) -> str:
        url = f"http://127.0.0.1:{self.ports[env]}/cgi-bin/env"
        with urllib.request.urlopen(url, timeout=3) as reply:
            return reply.read().decode().strip()

    def wait_answer(self, env: str, seconds: float = 10) -> str:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.answer(env)
            except OSError:
                assert time.monotonic() < deadline, f"{env} never answered"
                time.sleep(0.1)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``invoke ARGS`` in the background, to interrupt or race it."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVTASKS_")}
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.project.root,
            env={**environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def releases(self, env: str) -> list[dict[str, str]]:
        done = self.invoke("releases", f"--env={env}", "--json")
        assert done.code == 0, done.text
        return list(json.loads(done.out))

    def containers(self) -> list[str]:
        found = self.docker.containers.list(
            all=True, filters={"label": f"envtasks.app={self.name}"}
        )  # type: ignore[attr-defined]
        return sorted(c.name for c in found)

    def running(self, env: str) -> list[str]:
        found = self.docker.containers.list(  # type: ignore[attr-defined]
            filters={"label": [f"envtasks.app={self.name}", f"envtasks.env={env}"]}
        )
        return sorted(c.name for c in found)

    def cleanup(self) -> None:
        for container in self.docker.containers.list(all=True):  # type: ignore[attr-defined]
            if container.name.startswith((f"{self.name}-", f"envtasks-lock-{self.name}-")):
                container.remove(force=True)

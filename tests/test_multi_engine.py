"""Several engines per env: a second real dockerd, and one reached through a real sshd."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from extra_engines import SECOND_SHM_KB, SecondEngine, Sshd, start_second_engine, start_sshd
from helpers import Project, assert_one_line_error

pytestmark = pytest.mark.engine
MAIN = "unix:///var/run/docker.sock"
CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "version=$ENVTASKS_VERSION"\n'
# Fails only on the second engine, whose containers get a different /dev/shm size.
ONLY_ON_MAIN = f'cmd:/bin/sh -c "! df -k /dev/shm | grep -q {SECOND_SHM_KB}"'


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def second_engine(
    docker_client: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecondEngine]:
    try:
        engine = start_second_engine(tmp_path_factory.mktemp("engine2"))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _fail_or_skip(f"cannot start a second dockerd: {exc}")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def sshd(second_engine: SecondEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"), port, second_engine.address)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _fail_or_skip(f"cannot start sshd: {exc}")
    yield server
    server.stop()


class TwoEngineApp:
    def __init__(
        self, project: Project, hosts: list[str], clients: list[docker.DockerClient]
    ) -> None:
        self.project = project
        self.hosts = hosts
        self.clients = clients
        self.name = project.image.rsplit("/", 1)[-1]
        project.write("www/cgi-bin/env", CGI)
        (project.root / "www/cgi-bin/env").chmod(0o755)
        self.configure("")
        project.commit("app")

    def configure(self, health: str, hosts: list[str] | None = None) -> None:
        self.project.write(
            "envs/base.env",
            f"ENVTASKS_IMAGE={self.project.image}\nENVTASKS_HEALTH_GRACE=1\nENVTASKS_HEALTH_TIMEOUT=6\n",
        )
        self.project.write(
            "envs/dev.env",
            f"ENVTASKS_PORTS=127.0.0.1::8080\nENVTASKS_DOCKER_HOST={','.join(hosts or self.hosts)}\n"
            + (f"ENVTASKS_HEALTHCHECK={health}\n" if health else ""),
        )

    def release(self, version: str) -> None:
        (self.project.root / "www/version").write_text(version)
        done = self.project.invoke("build", f"--version={version}", "push")
        assert done.code == 0, done.text

    def answers(self) -> list[str]:
        """What the current release answers on each engine, read through its published port."""
        found = []
        for client in self.clients:
            running = client.containers.list(
                filters={"label": [f"envtasks.app={self.name}", "envtasks.env=dev"]}
            )
            assert len(running) == 1, [c.name for c in running]
            binding = running[0].attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
            assert binding["HostIp"] == "127.0.0.1"
            url = f"http://127.0.0.1:{binding['HostPort']}/cgi-bin/env"
            with urllib.request.urlopen(url, timeout=3) as reply:
                found.append(reply.read().decode().strip())
        return found

    def cleanup(self) -> None:
        for client in self.clients:
            for container in client.containers.list(all=True):
                if container.name.startswith((f"{self.name}-", f"envtasks-lock-{self.name}-")):
                    container.remove(force=True)


@pytest.fixture
def two(
    project: Project, registry: str, busybox: Path, second_engine: SecondEngine
) -> Iterator[TwoEngineApp]:
    main = docker.DockerClient(base_url=MAIN)
    second = second_engine.client()
    app = TwoEngineApp(project, [MAIN, second_engine.address], [main, second])
    yield app
    app.cleanup()
    main.close()
    second.close()


def test_deploy_to_both_and_see_every_host(two: TwoEngineApp) -> None:
    two.release("v1")
    done = two.project.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert f"[{MAIN}]" in done.out and f"[{two.hosts[1]}]" in done.out
    assert two.answers() == ["version=v1", "version=v1"]
    releases = two.project.invoke("releases", "--env=dev", "--json")
    import json

    rows = json.loads(releases.out)
    assert sorted((r["host"], r["version"], r["status"]) for r in rows) == sorted(
        (h, "v1", "current") for h in two.hosts
    )
    status = two.project.invoke("status", "--env=dev")
    assert status.code == 0, status.text
    assert status.out.count("healthy (") == 2


def test_failure_on_one_engine_rolls_both_back(two: TwoEngineApp) -> None:
    two.release("v1")
    two.release("v2")
    assert two.project.invoke("deploy", "--env=dev", "--version=v1").code == 0
    two.configure(ONLY_ON_MAIN)
    done = two.project.invoke("deploy", "--env=dev", "--version=v2")
    assert_one_line_error(done, "deploy to dev failed on", two.hosts[1], f"switched back {MAIN}")
    assert two.answers() == ["version=v1", "version=v1"]
    assert "engines disagree" not in two.project.invoke("releases", "--env=dev").err


def test_dead_engine_stops_the_deploy_before_anything_changes(two: TwoEngineApp) -> None:
    two.release("v1")
    two.release("v2")
    assert two.project.invoke("deploy", "--env=dev", "--version=v1").code == 0
    before = sorted(c.name for c in two.clients[0].containers.list(all=True))
    two.configure("", hosts=[MAIN, "unix:///nonexistent/engine.sock"])
    done = two.project.invoke("deploy", "--env=dev", "--version=v2")
    assert_one_line_error(
        done, "unix:///nonexistent/engine.sock", "not reachable", "nothing was changed"
    )
    assert sorted(c.name for c in two.clients[0].containers.list(all=True)) == before
    assert two.answers()[0] == "version=v1"


def test_ssh_engine(two: TwoEngineApp, sshd: Sshd) -> None:
    two.release("v1")
    two.configure("", hosts=[sshd.address()])
    done = two.project.invoke("deploy", "--env=dev", "--version=v1", env=sshd.environ())
    assert done.code == 0, done.text
    running = two.clients[1].containers.list(filters={"label": f"envtasks.app={two.name}"})
    assert [c.name for c in running] == [f"{two.name}-dev-v1"]
    done = two.project.invoke("releases", "--env=dev", env=sshd.environ())
    assert "v1" in done.out and "current" in done.out


def test_engines_that_disagree_are_flagged(two: TwoEngineApp) -> None:
    two.release("v1")
    two.release("v2")
    assert two.project.invoke("deploy", "--env=dev", "--version=v1").code == 0
    two.configure("", hosts=[MAIN])
    assert two.project.invoke("deploy", "--env=dev", "--version=v2").code == 0
    two.configure("")
    releases = two.project.invoke("releases", "--env=dev")
    assert releases.code == 0, releases.text
    assert f"engines disagree: {MAIN} runs v2, {two.hosts[1]} runs v1" in releases.err
    status = two.project.invoke("status", "--env=dev")
    assert status.code != 0 and "engines disagree" in status.err

"""The Swarm target against the real engine in swarm mode (entered for these tests, left after)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from apps import release_version
from helpers import Project, assert_one_line_error

pytestmark = pytest.mark.engine
CGI = (
    '#!/bin/sh\necho "Content-Type: text/plain"\necho\n'
    'echo "version=$ENVTASKS_VERSION secret=$(cat "$DB_PASSWORD_FILE" 2>/dev/null)"\n'
)


@pytest.fixture(scope="module")
def swarm(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    entered = state != "active"
    if entered:
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
    yield docker_client
    if entered:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=True, capture_output=True)


class SwarmApp:
    def __init__(self, project: Project, client: docker.DockerClient) -> None:
        self.project = project
        self.client = client
        self.name = project.image.rsplit("/", 1)[-1]
        self.service = f"{self.name}-prod"
        project.write("www/cgi-bin/env", CGI)
        (project.root / "www/cgi-bin/env").chmod(0o755)
        self.configure()
        project.commit("swarm app")

    def configure(
        self, replicas: int = 1, secret: str = "swarm-pw-marker-1", keep: int = 5
    ) -> None:
        self.project.write(
            "envs/base.env",
            f"ENVTASKS_IMAGE={self.project.image}\nENVTASKS_TARGET=swarm\n"
            f"ENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_HEALTH_TIMEOUT=4\nENVTASKS_KEEP={keep}\n",
        )
        self.project.write(
            "envs/prod.env",
            f"ENVTASKS_PORTS=:8080\nENVTASKS_REPLICAS={replicas}\nDB_PASSWORD={secret}\n",
        )

    def release(self, version: str, healthy: bool = True) -> None:
        release_version(self.project, version, healthy)

    def answers(self) -> list[str]:
        """Each running task's answer, through its host-mode published port on 127.0.0.1."""
        found = []
        for container in self.client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={self.service}"}
        ):
            binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
            url = f"http://127.0.0.1:{binding['HostPort']}/cgi-bin/env"
            with urllib.request.urlopen(url, timeout=3) as reply:
                found.append(reply.read().decode().strip())
        return sorted(found)

    def releases(self) -> list[tuple[str, str]]:
        done = self.project.invoke("releases", "--env=prod", "--json")
        assert done.code == 0, done.text
        return [(r["version"], r["status"]) for r in json.loads(done.out)]

    def inspect(self) -> str:
        return subprocess.run(
            ["docker", "service", "inspect", self.service],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def cleanup(self) -> None:
        for service in self.client.services.list(filters={"name": self.service}):
            service.remove()
        for config in self.client.configs.list(filters={"name": f"envtasks-lock-{self.name}"}):
            config.remove()


@pytest.fixture
def app(
    project: Project, swarm: docker.DockerClient, registry: str, busybox: Path
) -> Iterator[SwarmApp]:
    application = SwarmApp(project, swarm)
    yield application
    application.cleanup()


@pytest.mark.contract("swarm: failed update rolls back to the previous spec")
def test_create_update_fail_and_roll_back(app: SwarmApp) -> None:
    for version in ("v1", "v2"):
        app.release(version)
    app.release("v3", healthy=False)

    done = app.project.invoke("deploy", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    assert app.answers() == ["version=v1 secret=swarm-pw-marker-1"]
    spec = json.loads(app.inspect())[0]["Spec"]
    digest = app.project.invoke("releases", "--env=prod", "--json")
    assert (
        spec["TaskTemplate"]["ContainerSpec"]["Image"]
        == f"{app.project.image}@{json.loads(digest.out)[0]['digest']}"
    )
    update = spec["UpdateConfig"]
    assert update["Parallelism"] == 1 and update["FailureAction"] == "rollback"
    assert update["Order"] == "start-first"  # no fixed host port
    assert update["Monitor"] >= (4 + 3 * 1) * 10**9
    assert spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"][0] == "CMD-SHELL"

    done = app.project.invoke("deploy", "--env=prod", "--version=v2")
    assert done.code == 0, done.text
    assert app.answers() == ["version=v2 secret=swarm-pw-marker-1"]
    assert app.releases() == [("v2", "current"), ("v1", "previous")]

    done = app.project.invoke("deploy", "--env=prod", "--version=v3")
    assert_one_line_error(
        done, "deploy of v3 to prod failed", "rolled the update back", "unhealthy"
    )
    assert "last 50 log lines" in done.out
    assert app.answers() == ["version=v2 secret=swarm-pw-marker-1"]
    assert app.releases() == [("v3", "failed"), ("v2", "current"), ("v1", "previous")]

    done = app.project.invoke("rollback", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    assert app.answers() == ["version=v1 secret=swarm-pw-marker-1"]
    assert app.releases() == [("v3", "failed"), ("v2", "previous"), ("v1", "current")]
    assert "swarm-pw-marker-1" not in app.inspect()
    status = app.project.invoke("status", "--env=prod")
    assert status.code == 0 and "1 of 1 running healthy" in status.out, status.text


def test_replicas_with_host_mode_ports_and_secret_rotation(app: SwarmApp) -> None:
    app.release("v1")
    app.configure(replicas=2, secret="swarm-pw-marker-2", keep=1)
    done = app.project.invoke("deploy", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    assert app.answers() == ["version=v1 secret=swarm-pw-marker-2"] * 2
    first_secrets = {
        s.name for s in app.client.secrets.list(filters={"label": f"envtasks.app={app.name}"})
    }
    assert len(first_secrets) == 1

    app.configure(replicas=2, secret="swarm-pw-marker-3", keep=1)
    done = app.project.invoke("deploy", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    assert app.answers() == ["version=v1 secret=swarm-pw-marker-3"] * 2
    inspected = app.inspect()
    assert "swarm-pw-marker-2" not in inspected and "swarm-pw-marker-3" not in inspected
    secrets = {
        s.name for s in app.client.secrets.list(filters={"label": f"envtasks.app={app.name}"})
    }
    assert len(secrets) == 1 and secrets.isdisjoint(first_secrets), (
        "the old value's secret is pruned"
    )


def test_dry_swarm_deploy_changes_nothing(app: SwarmApp) -> None:
    app.release("v1")
    done = app.project.invoke("--dry", "deploy", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    assert (
        "docker service create --name" in done.out
        and "--update-failure-action rollback" in done.out
    )
    assert "docker config create" in done.out
    assert "swarm-pw-marker-1" not in done.text
    unpushed = app.project.invoke("--dry", "deploy", "--env=prod", "--version=v8")
    assert unpushed.code == 0, unpushed.text
    assert f"{app.project.image}@<digest of v8>" in unpushed.out
    assert app.client.services.list(filters={"name": app.service}) == []


def test_promote_from_containers_to_swarm_and_logs(app: SwarmApp) -> None:
    app.release("v1")
    app.project.write(
        "envs/dev.env",
        "ENVTASKS_TARGET=container\nENVTASKS_PORTS=127.0.0.1::8080\nDB_PASSWORD=dev-pw\n",
    )
    assert app.project.invoke("deploy", "--env=dev", "--version=v1").code == 0
    try:
        done = app.project.invoke("promote", "--from=dev", "--to=prod")
        assert done.code == 0, done.text
        assert app.answers() == ["version=v1 secret=swarm-pw-marker-1"]
        assert app.releases() == [("v1", "current")]
        app.answers()
        logs = app.project.invoke("logs", "--env=prod", "--tail=20")
        assert logs.code == 0, logs.text
        assert "response:200" in logs.out
    finally:
        for container in app.client.containers.list(
            all=True, filters={"label": "envtasks.env=dev"}
        ):
            if container.name.startswith(app.name):
                container.remove(force=True)


@pytest.mark.contract("swarm: killed mid-deploy (SIGKILL, SIGINT)")
@pytest.mark.parametrize("signal_number", [9, 2], ids=["SIGKILL", "SIGINT"])
def test_swarm_deploy_killed_while_waiting_recovers(app: SwarmApp, signal_number: int) -> None:
    app.release("v1")
    app.release("v2")
    assert app.project.invoke("deploy", "--env=prod", "--version=v1").code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "deploy", "--env=prod", "--version=v2"],
        cwd=app.project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("$ docker service update"):
            time.sleep(0.5)  # inside the wait for the rolling update
            proc.send_signal(signal_number)
            break
    proc.communicate(timeout=120)
    done = app.project.invoke("deploy", "--env=prod", "--version=v2")
    assert done.code == 0, done.text
    if signal_number == 9:
        assert "taking over the stale lock" in done.out
    assert app.answers() == ["version=v2 secret=swarm-pw-marker-1"]
    assert [status for _, status in app.releases()].count("current") == 1
    assert app.client.configs.list(filters={"name": f"envtasks-lock-{app.name}"}) == []


@pytest.mark.contract("swarm: concurrent deploys to one env")
def test_swarm_concurrent_deploys_run_one_at_a_time(app: SwarmApp) -> None:
    versions = ["c1", "c2", "c3"]
    for version in versions:
        app.release(version)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "invoke",
                "deploy",
                "--env=prod",
                f"--version={v}",
                "--lock-wait=300",
            ],
            cwd=app.project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in versions
    ]
    results = [(p.wait(timeout=600), p.communicate()) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    rows = app.releases()
    assert [status for _, status in rows].count("current") == 1
    assert sorted(v for v, _ in rows) == versions
    current = next(v for v, status in rows if status == "current")
    assert app.answers() == [f"version={current} secret=swarm-pw-marker-1"]

"""Secret values never land in anything envtasks prints or stores, nor where others can read them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from apps import App

pytestmark = pytest.mark.engine

MARKERS = {
    "DB_PASSWORD": "mk-db-7f3a91",  # envs/prod.local.env
    "API_TOKEN": "mk-token-5c2e08",  # process environment, declared bare in envs/prod.env
    "ENVTASKS_REGISTRY_PASSWORD": "mk-registry-9d41b6",  # process environment (CI)
    "SESSION_KEY": "mk-key-13ab77",  # envs/prod.env, secret by name
    "DSN": "mk-dsn-e0c4f2",  # secret only because ENVTASKS_SECRETS lists it
}


def leaks(text: str) -> list[str]:
    return [key for key, marker in MARKERS.items() if marker in text]


@pytest.mark.contract("secrets never printed or stored")
def test_no_secret_in_any_output_label_layer_or_lock(app: App, docker_client: Any) -> None:
    project = app.project
    project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={project.image}\nENVTASKS_REGISTRY_USERNAME=ci\nENVTASKS_SECRETS=DSN\n"
        "ENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_HEALTH_TIMEOUT=4\nGREETING=hello\n",
    )
    project.write(
        "envs/prod.env",
        f"ENVTASKS_PORTS=127.0.0.1:{app.ports['prod']}:8080\nAPI_TOKEN\n"
        f"SESSION_KEY={MARKERS['SESSION_KEY']}\nDSN=postgres://u:{MARKERS['DSN']}@db/x\n",
    )
    project.write("envs/prod.local.env", f"DB_PASSWORD={MARKERS['DB_PASSWORD']}\n")
    env = {
        "API_TOKEN": MARKERS["API_TOKEN"],
        "ENVTASKS_REGISTRY_PASSWORD": MARKERS["ENVTASKS_REGISTRY_PASSWORD"],
    }
    outputs = []

    def run(*args: str) -> None:
        done = project.invoke(*args, env=env)
        outputs.append((args, done.code, done.text))

    app.release("v1")
    app.release("v2", healthy=False)
    run("config", "--env=prod")
    run("config", "--env=prod", "--json")
    run("build", "--version=v3", "--env=prod")
    run("push", "--version=v3", "--env=prod")
    run("--dry", "build", "push", "--env=prod")
    run("--dry", "deploy", "--env=prod", "--version=v1")
    proc = app.spawn("deploy", "--env=prod", "--version=v1", env=env)
    lock_labels: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline and not lock_labels:
        for container in docker_client.containers.list(
            all=True, filters={"name": f"envtasks-lock-{app.name}-prod"}
        ):
            lock_labels = dict(container.labels)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    outputs.append((("deploy",), proc.returncode, out + err))
    run("deploy", "--env=prod", "--version=v2")  # fails its health gate
    run("releases", "--env=prod")
    run("releases", "--env=prod", "--json")
    run("status", "--env=prod")
    run("logs", "--env=prod")
    run("rollback", "--env=prod")

    assert outputs[0][1] == 0 and "DB_PASSWORD=******" in outputs[0][2]
    assert any(
        code != 0 and "v2" in text
        for args, code, text in outputs
        if args == ("deploy", "--env=prod", "--version=v2")
    )
    for args, _, text in outputs:
        assert leaks(text) == [], (args, text)
    assert lock_labels, "saw the lock while the deploy ran"
    assert leaks(json.dumps(lock_labels)) == []

    for ref in (f"{project.image}:v1", f"{project.image}:v3"):
        image = docker_client.images.get(ref)
        assert leaks(json.dumps(image.attrs)) == [], ref
        assert leaks(json.dumps(image.history())) == [], ref
        layers = b"".join(image.save())
        assert not [k for k, m in MARKERS.items() if m.encode() in layers], ref
    for container in docker_client.containers.list(
        all=True, filters={"label": f"envtasks.app={app.name}"}
    ):
        assert leaks(json.dumps(container.labels)) == [], container.name
        # The container target passes app secrets as env (Swarm uses secrets); build args never.
        assert MARKERS["ENVTASKS_REGISTRY_PASSWORD"] not in json.dumps(container.attrs)

    docker_config = Path.home() / ".docker/config.json"
    if docker_config.exists():
        assert MARKERS["ENVTASKS_REGISTRY_PASSWORD"] not in docker_config.read_text()
    for path in project.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert MARKERS["ENVTASKS_REGISTRY_PASSWORD"].encode() not in path.read_bytes(), path


@pytest.mark.contract("secrets never printed or stored")
def test_config_warns_about_secrets_in_tracked_files(app: App) -> None:
    app.project.write(
        "envs/prod.env",
        f"ENVTASKS_PORTS=127.0.0.1:{app.ports['prod']}:8080\nSTRIPE_KEY=sk-tracked-1\n",
    )
    app.project.write("envs/prod.local.env", "DB_PASSWORD=untracked-local\n")
    app.project.commit("secret in a tracked file")
    done = app.invoke("config", "--env=prod")
    assert done.code == 0, done.text
    assert "STRIPE_KEY is secret but its value is in envs/prod.env, which git tracks" in done.err
    assert "envs/prod.local.env" in done.err and "DB_PASSWORD" not in done.err
    assert "sk-tracked-1" not in done.text


def test_demo_project_ignores_local_env_files() -> None:
    ignore = (Path(__file__).resolve().parents[1] / ".gitignore").read_text()
    assert "envs/*.local.env" in ignore.splitlines()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "echo 'envs/*.local.env' >> .gitignore" in readme

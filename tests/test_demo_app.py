"""The shipped demo app: its Dockerfile builds with envtasks and its container serves /healthz."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import Project

pytestmark = pytest.mark.engine
REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "envtasks/python-base:bookworm"


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return reply.status, reply.read()


def test_demo_dockerfile_builds_and_answers_healthz(
    docker_client: object, registry: str, tmp_path: Path
) -> None:
    try:
        docker_client.images.get(BASE_IMAGE)  # type: ignore[attr-defined]
    except Exception:
        pytest.fail(f"{BASE_IMAGE} is missing; scripts/setup.sh makes it")
    root = tmp_path / "demo"
    shutil.copytree(
        REPO,
        root,
        ignore=shutil.ignore_patterns(".venv", ".git", "*.local.env", "__pycache__", "tests"),
    )
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    demo = Project(root, "")
    demo.commit("demo")
    version = f"demo-{uuid.uuid4().hex[:8]}"
    built = demo.invoke("build", f"--version={version}")
    assert built.code == 0, built.text
    ref = f"localhost:5000/envtasks-demo:{version}"
    container = docker_client.containers.run(  # type: ignore[attr-defined]
        ref,
        detach=True,
        environment={"ENVTASKS_ENV": "test", "ENVTASKS_VERSION": version, "GREETING": "hi there"},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                status, body = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200
        _, body = get(f"http://127.0.0.1:{port}/")
        assert json.loads(body) == {"env": "test", "version": version, "greeting": "hi there"}
        user = container.attrs["Config"]["User"]
        assert user and not user.startswith("0"), "the demo image runs as non-root"
    finally:
        container.remove(force=True)
        docker_client.images.remove(ref, force=True)  # type: ignore[attr-defined]

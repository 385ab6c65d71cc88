"""Fixtures: temp projects, and the real engine and registry (skipped locally, failed in CI)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import App
from helpers import Project, busybox_dockerfile

REGISTRY = "127.0.0.1:5000"
REGISTRY_HOST = "localhost:5000"
BUSYBOX = Path("/bin/busybox")


def _missing(reason: str) -> None:
    """Skip locally, fail in CI: CI must never pass by skipping the engine tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs this, and: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        _missing(f"no Docker engine reachable ({exc}); run scripts/setup.sh")
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(docker_client: object) -> str:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError as exc:
        _missing(f"no registry on {REGISTRY} ({exc}); run scripts/setup.sh")
    return REGISTRY_HOST


@pytest.fixture(scope="session")
def busybox() -> Path:
    if not BUSYBOX.is_file():
        _missing("/bin/busybox (busybox-static) is not installed; run scripts/setup.sh")
    return BUSYBOX


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A git-committed project with a busybox httpd image and a unique repository name."""
    root = tmp_path / "proj"
    root.mkdir()
    image = f"{REGISTRY_HOST}/envtasks-test-{uuid.uuid4().hex[:10]}"
    proj = Project(root, image)
    proj.write("tasks.py", "from envtasks import ns\n")
    proj.write("envs/base.env", f"ENVTASKS_IMAGE={image}\nGREETING=hello\n")
    proj.write("envs/dev.env", "GREETING=hi from dev\n")
    proj.write("envs/prod.env", "GREETING=hi from prod\nDB_PASSWORD=s3cr3t-prod-pw\n")
    proj.write("Dockerfile", busybox_dockerfile())
    proj.write("www/index.html", "hello\n")
    proj.write("www/healthz", "ok\n")
    proj.write(".gitignore", "envs/*.local.env\n__pycache__/\n")
    if BUSYBOX.is_file():
        shutil.copy(BUSYBOX, root / "busybox")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    proj.commit("initial")
    return proj


@pytest.fixture
def app(project: Project, docker_client: object, registry: str, busybox: Path) -> Iterator[App]:
    """A busybox httpd app with dev and prod envs; its containers are removed after the test."""
    application = App(project, docker_client)
    yield application
    application.cleanup()


@pytest.fixture
def cleanup_images(docker_client: object) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(Exception):
            docker_client.images.remove(ref, force=True)  # type: ignore[attr-defined]


# -- docs/RELIABILITY.md is generated from these records (scripts/reliability_report.py) --

RELIABILITY_RECORD = Path(
    os.environ.get("RELIABILITY_RECORD", Path(__file__).resolve().parents[1] / ".reliability.json")
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "contract(kind): a fault or input class counted in docs/RELIABILITY.md"
    )
    config._reliability = []  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    marker = item.get_closest_marker("contract")
    if marker is None or (report.when != "call" and not (report.when == "setup" and report.failed)):
        return
    item.config._reliability.append(  # type: ignore[attr-defined]
        {"kind": marker.args[0], "test": item.nodeid, "kept": report.passed}
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    records = getattr(session.config, "_reliability", [])
    if records:
        import json

        RELIABILITY_RECORD.write_text(json.dumps(records, indent=1))

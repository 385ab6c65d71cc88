"""build, tag and push against the real engine and the real registry."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import Project, assert_one_line_error, registry_digest, registry_tags, repo_path

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _engine(docker_client: object, registry: str, busybox: Path) -> None:
    """Every test here needs the engine, the registry and busybox."""


def image_labels(docker_client: object, ref: str) -> dict[str, str]:
    return dict(docker_client.images.get(ref).labels)  # type: ignore[attr-defined]


def test_build_push_one_run_reads_back_from_registry(
    project: Project, docker_client: object, cleanup_images: list[str]
) -> None:
    sha = project.git("rev-parse", "HEAD")
    done = project.invoke("build", "push")
    ref = f"{project.image}:{sha[:12]}"
    cleanup_images.append(ref)
    assert done.code == 0, done.text
    assert f"built {ref}" in done.out
    assert registry_tags("localhost:5000", repo_path(project.image)) == [sha[:12]]
    digest = registry_digest("localhost:5000", repo_path(project.image), sha[:12])
    assert done.out.splitlines()[-1] == f"{ref}@{digest}"
    labels = image_labels(docker_client, ref)
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.version"] == sha[:12]
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert "org.opencontainers.image.source" in labels


def test_no_application_variable_is_baked_in(
    project: Project, docker_client: object, cleanup_images: list[str]
) -> None:
    project.write("envs/base.env", f"ENVTASKS_IMAGE={project.image}\nBAKED_CHECK=base-value-77\n")
    done = project.invoke("build", "--version=nobake", "--env=prod")
    cleanup_images.append(f"{project.image}:nobake")
    assert done.code == 0, done.text
    inspect = docker_client.api.inspect_image(f"{project.image}:nobake")  # type: ignore[attr-defined]
    config_text = json.dumps(inspect["Config"])
    assert "base-value-77" not in config_text and "s3cr3t-prod-pw" not in config_text
    history = json.dumps(docker_client.api.history(f"{project.image}:nobake"))  # type: ignore[attr-defined]
    assert "base-value-77" not in history and "s3cr3t-prod-pw" not in history


def test_tag_and_push_extra_tag(project: Project, cleanup_images: list[str]) -> None:
    cleanup_images += [f"{project.image}:v1", f"{project.image}:stable"]
    assert project.invoke("build", "--version=v1").code == 0
    done = project.invoke("tag", "--tag=stable", "--version=v1")
    assert done.code == 0, done.text
    done = project.invoke("push", "--version=v1", "--tag=stable")
    assert done.code == 0, done.text
    repo = repo_path(project.image)
    assert sorted(registry_tags("localhost:5000", repo)) == ["stable", "v1"]
    assert registry_digest("localhost:5000", repo, "v1") == registry_digest(
        "localhost:5000", repo, "stable"
    )


def test_push_of_missing_image_is_one_line(project: Project) -> None:
    assert_one_line_error(
        project.invoke("push", "--version=never-built"), "does not exist", "invoke build"
    )


def test_build_failure_is_one_line(project: Project) -> None:
    project.write(
        "Dockerfile", 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n'
    )
    assert_one_line_error(project.invoke("build", "--version=broken"), "building", "failed")


def test_buildkit_dockerfile_goes_through_the_cli(
    project: Project, docker_client: object, cleanup_images: list[str]
) -> None:
    project.write(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN --mount=type=cache,target=/cache ["/bin/busybox", "sh", "-c", "echo built > /marker"]\n',
    )
    cleanup_images.append(f"{project.image}:bk")
    done = project.invoke("build", "--version=bk")
    assert done.code == 0, done.text
    labels = image_labels(docker_client, f"{project.image}:bk")
    assert labels["org.opencontainers.image.version"] == "bk"


@dataclass
class Registry:
    host: str
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(
                    f"http://{self.host.replace('localhost', '127.0.0.1')}/v2/", timeout=1
                )
                return
            except urllib.error.HTTPError:
                return  # 401 from an auth registry: it is up
            except OSError:
                time.sleep(0.1)
        raise AssertionError("test registry did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_registry(tmp_path: Path, auth: str = "") -> Registry:
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed; run scripts/setup.sh")
    port = free_port()
    config = tmp_path / f"registry-{port}.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path}/data-{port}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    return Registry(f"localhost:{port}", config)


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = make_registry(tmp_path)
    registry.start()
    yield registry
    registry.stop()


def test_push_to_stopped_registry_fails_clearly(
    project: Project, own_registry: Registry, cleanup_images: list[str]
) -> None:
    image = f"{own_registry.host}/stopped-test"
    project.write("envs/base.env", f"ENVTASKS_IMAGE={image}\n")
    cleanup_images.append(f"{image}:v1")
    assert project.invoke("build", "--version=v1").code == 0
    first = project.invoke("push", "--version=v1")
    assert first.code == 0, first.text
    own_registry.stop()
    done = project.invoke("push", "--version=v1")
    assert_one_line_error(
        done,
        f"pushing {image}:v1 failed",
        f"check that the registry {own_registry.host} is running",
    )
    assert "retrying" in done.out, "connection refused is retried as transient"


def test_registry_refusing_credentials(
    project: Project, tmp_path: Path, cleanup_images: list[str]
) -> None:
    crypt = pytest.importorskip("crypt")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"ci:{crypt.crypt('right-pw-31', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    registry = make_registry(
        tmp_path, f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    )
    registry.start()
    try:
        image = f"{registry.host}/auth-test"
        project.write("envs/base.env", f"ENVTASKS_IMAGE={image}\nENVTASKS_REGISTRY_USERNAME=ci\n")
        cleanup_images.append(f"{image}:v1")
        assert project.invoke("build", "--version=v1").code == 0
        wrong = project.invoke(
            "push", "--version=v1", env={"ENVTASKS_REGISTRY_PASSWORD": "wrong-pw-47"}
        )
        assert_one_line_error(wrong, "refused the login of 'ci'", "ENVTASKS_REGISTRY_PASSWORD")
        assert "wrong-pw-47" not in wrong.text
        right = project.invoke(
            "push", "--version=v1", env={"ENVTASKS_REGISTRY_PASSWORD": "right-pw-31"}
        )
        assert right.code == 0, right.text
        assert "right-pw-31" not in right.text
        assert right.out.splitlines()[-1].startswith(f"{image}:v1@sha256:")
    finally:
        registry.stop()

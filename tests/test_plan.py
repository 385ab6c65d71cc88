"""Plans are data: compared as the docker CLI lines they render to."""

from __future__ import annotations

from pathlib import Path

from envtasks.config import load_settings
from envtasks.plan import image_labels, needs_buildkit, plan_build, plan_push, plan_tag, render


def settings_for(tmp_path: Path, extra: str = "", environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs/base.env").write_text("ENVTASKS_IMAGE=localhost:5000/shop\n" + extra)
    return load_settings(tmp_path, None, environ or {})


def lines(steps, settings) -> list[str]:  # type: ignore[no-untyped-def]
    return [render(step, settings.root, settings.masker) for step in steps]


def test_build_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "ENVTASKS_BUILD_ARGS=BASE=b,NPM_TOKEN=npm-secret\n")
    labels = image_labels("v1", "abc123", "2026-01-01T00:00:00Z", None)
    assert lines(plan_build(settings, "v1", labels, no_cache=True, buildkit=False), settings) == [
        "docker build --file Dockerfile --tag localhost:5000/shop:v1"
        " --label org.opencontainers.image.created=2026-01-01T00:00:00Z"
        " --label org.opencontainers.image.revision=abc123"
        " --label org.opencontainers.image.source=unknown"
        " --label org.opencontainers.image.version=v1"
        " --build-arg BASE=b --build-arg 'NPM_TOKEN=******' --no-cache ."
    ]


def test_buildkit_build_line(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, "ENVTASKS_DOCKERFILE=docker/Dockerfile\nENVTASKS_CONTEXT=src\n"
    )
    steps = plan_build(settings, "v1", (), no_cache=False, buildkit=True)
    assert lines(steps, settings) == [
        "DOCKER_BUILDKIT=1 docker build --file docker/Dockerfile --tag localhost:5000/shop:v1 src"
    ]


def test_push_with_login_and_extra_tag(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        "ENVTASKS_REGISTRY_USERNAME=ci\n",
        {"ENVTASKS_REGISTRY_PASSWORD": "registry-pw"},
    )
    rendered = lines(plan_push(settings, "v1", "latest"), settings)
    assert rendered == [
        "docker login localhost:5000 --username ci --password-stdin",
        "docker image tag localhost:5000/shop:v1 localhost:5000/shop:latest",
        "docker image push localhost:5000/shop:v1",
        "docker image push localhost:5000/shop:latest",
    ]
    assert not any("registry-pw" in line for line in rendered)


def test_push_without_credentials(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert lines(plan_push(settings, "v1", None), settings) == [
        "docker image push localhost:5000/shop:v1"
    ]


def test_tag_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert lines(plan_tag(settings, "v1", "stable"), settings) == [
        "docker image tag localhost:5000/shop:v1 localhost:5000/shop:stable"
    ]


def test_needs_buildkit() -> None:
    assert needs_buildkit("# syntax=docker/dockerfile:1\nFROM x\n")
    assert needs_buildkit("FROM x\nRUN --mount=type=cache,target=/root/.cache pip install .\n")
    assert needs_buildkit("FROM x\nRUN <<EOF\necho hi\nEOF\n")
    assert not needs_buildkit("FROM x\n# a comment about syntax\nRUN echo hi\n")

"""What to do, as plain data: the image steps of build, tag and push.

Nothing here touches Docker. Each step renders as the docker CLI line a
person would type, which is what ``--dry`` prints, and the engine adapter
carries the same step out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .masking import Masker

OCI = "org.opencontainers.image"
# BuildKit-only Dockerfile features, which docker-py's classic builder cannot run.
_BUILDKIT_MARKERS = re.compile(
    r"^\s*#\s*syntax\s*=|^\s*RUN\b.*--(mount|network|security)=|<<-?\s*['\"]?[A-Za-z_]+['\"]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class BuildImage:
    ref: str
    dockerfile: Path
    context: Path
    build_args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    no_cache: bool
    buildkit: bool


@dataclass(frozen=True)
class TagImage:
    source: str
    target: str


@dataclass(frozen=True)
class Login:
    registry: str
    username: str


@dataclass(frozen=True)
class PushImage:
    ref: str


Step = BuildImage | TagImage | Login | PushImage


def image_ref(image: str, tag: str) -> str:
    return f"{image}:{tag}"


def needs_buildkit(dockerfile_text: str) -> bool:
    return _BUILDKIT_MARKERS.search(dockerfile_text) is not None


def image_revision(image: Mapping[str, Any] | None) -> str:
    """The source revision an inspected image was built from, as its OCI label says."""
    labels = ((image or {}).get("Config") or {}).get("Labels") or {}
    return str(labels.get(f"{OCI}.revision", "unknown"))


def image_labels(
    version: str, revision: str | None, created: str, source: str | None
) -> tuple[tuple[str, str], ...]:
    return (
        (f"{OCI}.created", created),
        (f"{OCI}.revision", revision or "unknown"),
        (f"{OCI}.source", source or "unknown"),
        (f"{OCI}.version", version),
    )


def plan_build(
    settings: Settings,
    version: str,
    labels: Sequence[tuple[str, str]],
    no_cache: bool,
    buildkit: bool,
) -> list[Step]:
    return [
        BuildImage(
            ref=image_ref(settings.image, version),
            dockerfile=settings.dockerfile,
            context=settings.context,
            build_args=settings.build_args,
            labels=tuple(labels),
            no_cache=no_cache,
            buildkit=buildkit,
        )
    ]


def plan_tag(settings: Settings, version: str, tag: str) -> list[Step]:
    return [TagImage(image_ref(settings.image, version), image_ref(settings.image, tag))]


def plan_push(settings: Settings, version: str, extra_tag: str | None) -> list[Step]:
    steps: list[Step] = []
    if settings.registry_username:
        steps.append(Login(settings.registry, settings.registry_username))
    if extra_tag:
        steps.extend(plan_tag(settings, version, extra_tag))
    steps.append(PushImage(image_ref(settings.image, version)))
    if extra_tag:
        steps.append(PushImage(image_ref(settings.image, extra_tag)))
    return steps


def _display_path(path: Path, cwd: Path) -> str:
    try:
        shown = str(path.relative_to(cwd))
    except ValueError:
        return str(path)
    return shown or "."


def cli_argv(step: Step, cwd: Path) -> list[str]:
    """The docker CLI command for a step, as an argv list (never a shell string)."""
    match step:
        case BuildImage():
            argv = [
                "docker",
                "build",
                "--file",
                _display_path(step.dockerfile, cwd),
                "--tag",
                step.ref,
            ]
            for key, value in step.labels:
                argv += ["--label", f"{key}={value}"]
            for key, value in step.build_args:
                argv += ["--build-arg", f"{key}={value}"]
            if step.no_cache:
                argv.append("--no-cache")
            argv.append(_display_path(step.context, cwd))
            return argv
        case TagImage():
            return ["docker", "image", "tag", step.source, step.target]
        case Login():
            return [
                "docker",
                "login",
                step.registry,
                "--username",
                step.username,
                "--password-stdin",
            ]
        case PushImage():
            return ["docker", "image", "push", step.ref]
    raise AssertionError(f"unknown step {step!r}")


def cli_environment(step: Step) -> Mapping[str, str]:
    if isinstance(step, BuildImage) and step.buildkit:
        return {"DOCKER_BUILDKIT": "1"}
    return {}


def render(step: Step, cwd: Path, masker: Masker) -> str:
    prefix = "".join(f"{k}={v} " for k, v in cli_environment(step).items())
    # Mask each word before quoting: quoting could split a secret so it no longer matches.
    return prefix + shlex.join(masker(word) for word in cli_argv(step, cwd))

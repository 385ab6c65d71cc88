"""Releases and the deploy, rollback and prune plans, as plain data.

A release is a container labelled with its app, env, version and digest.
Everything rollback needs lives in those labels on the engine, so any
machine that reaches the engine can read the history and act on it.
Nothing here talks to Docker.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .config import HealthCheck, PortSpec, Settings
from .errors import EnvtasksError
from .masking import Masker

LABEL = "envtasks"
APP_LABEL = f"{LABEL}.app"
ENV_LABEL = f"{LABEL}.env"
VERSION_LABEL = f"{LABEL}.version"
DIGEST_LABEL = f"{LABEL}.digest"
DEPLOYED_AT_LABEL = f"{LABEL}.deployed-at"
REVISION_LABEL = f"{LABEL}.revision"
CONFIG_LABEL = f"{LABEL}.config"
IMAGE_LABEL = f"{LABEL}.image"
FAILED_SUFFIX = re.compile(r"-failed-[0-9a-f]{8}$")
RESTART_POLICY = "unless-stopped"

CURRENT, PREVIOUS, FAILED = "current", "previous", "failed"


@dataclass(frozen=True)
class Release:
    """One kept release on the engine, as read from its container."""

    name: str
    version: str
    digest: str
    deployed_at: str
    revision: str
    running: bool
    container_id: str = ""
    config: str = ""
    image_id: str = ""
    ref: str = ""  # exactly what was deployed: image@digest, or a local image ID
    never_started: bool = False  # debris of a deploy killed between create and start

    @property
    def failed(self) -> bool:
        return self.never_started or FAILED_SUFFIX.search(self.name) is not None

    def as_row(self, status: str) -> dict[str, str]:
        return {
            "version": self.version,
            "digest": self.digest,
            "deployed_at": self.deployed_at,
            "status": status,
            "revision": self.revision,
        }


def container_name(app: str, env: str, version: str) -> str:
    return f"{app}-{env}-{version}"


def failed_name(name: str, container_id: str) -> str:
    return f"{name}-failed-{container_id[:8]}"


def newest_first(releases: Sequence[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: (r.deployed_at, r.name), reverse=True)


def current_release(releases: Sequence[Release]) -> Release | None:
    """The running release that did not fail; the newest if several run."""
    running = [r for r in newest_first(releases) if r.running and not r.failed]
    return running[0] if running else None


def statuses(releases: Sequence[Release]) -> list[tuple[Release, str]]:
    current = current_release(releases)
    rows = []
    for release in newest_first(releases):
        if release.failed:
            status = FAILED
        elif current is not None and release.name == current.name:
            status = CURRENT
        else:
            status = PREVIOUS
        rows.append((release, status))
    return rows


def describe_kept(releases: Sequence[Release]) -> str:
    kept = [f"{r.version} ({status})" for r, status in statuses(releases)]
    return ", ".join(kept) if kept else "none"


def rollback_target(releases: Sequence[Release], version: str | None) -> Release:
    """The kept release to go back to: ``version``, or the one before the current one."""
    usable = [r for r in newest_first(releases) if not r.failed]
    current = current_release(releases)
    if version:
        matches = [r for r in usable if r.version == version]
        if not matches:
            raise EnvtasksError(
                f"no kept release {version!r} to roll back to; kept: {describe_kept(releases)}"
            )
        return matches[0]
    older = [
        r
        for r in usable
        if current is None or (r.name != current.name and r.deployed_at < current.deployed_at)
    ]
    if not older:
        base = f"no release before {current.version}" if current else "no kept release"
        raise EnvtasksError(
            f"{base} to roll back to; kept: {describe_kept(releases)}; "
            "use --version=V for a newer kept one"
        )
    return older[0]


def releases_to_prune(releases: Sequence[Release], keep: int, current: str) -> list[Release]:
    """Beyond the ``keep`` newest good releases (the current one always among them).

    Failed releases never push a rollback target out: only the newest failure, when it
    is newer than the current release, stays for inspection.
    """
    ordered = newest_first(releases)
    kept = [r for r in ordered if r.name == current]
    current_at = kept[0].deployed_at if kept else ""
    latest_failure = next((r for r in ordered if r.failed and r.deployed_at > current_at), None)
    good = len(kept)
    for release in ordered:
        if good >= keep:
            break
        if not release.failed and release not in kept:
            kept.append(release)
            good += 1
    if latest_failure is not None and latest_failure not in kept:
        kept.append(latest_failure)
    return [r for r in ordered if r not in kept]


def config_fingerprint(
    environment: Mapping[str, str], ports: Sequence[PortSpec], image: str, health: HealthCheck
) -> str:
    """A short hash of what the container runs with: a change means a real redeploy."""
    text = json.dumps(
        {
            "env": sorted(environment.items()),
            "ports": [str(p) for p in ports],
            "image": image,
            "health": str(health),
        }
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- plan steps ---------------------------------------------------------------


@dataclass(frozen=True)
class AcquireLock:
    app: str
    env: str
    swarm: bool = False  # a swarm config (cluster-wide) instead of a container


@dataclass(frozen=True)
class ReleaseLock:
    app: str
    env: str
    swarm: bool = False


@dataclass(frozen=True)
class PullImage:
    ref: str


@dataclass(frozen=True)
class RenameContainer:
    name: str
    new_name: str


@dataclass(frozen=True)
class CreateContainer:
    name: str
    image: str
    environment: tuple[tuple[str, str], ...] = field(repr=False)
    labels: tuple[tuple[str, str], ...]
    ports: tuple[PortSpec, ...]
    restart: str = RESTART_POLICY
    auto_remove: bool = False


@dataclass(frozen=True)
class StopContainer:
    name: str


@dataclass(frozen=True)
class StartContainer:
    name: str


@dataclass(frozen=True)
class WaitHealthy:
    name: str
    health: HealthCheck
    timeout: float
    grace: float
    port: PortSpec | None


@dataclass(frozen=True)
class MarkFailed:
    name: str


@dataclass(frozen=True)
class RemoveContainer:
    name: str


DeployStep = (
    AcquireLock
    | ReleaseLock
    | PullImage
    | RenameContainer
    | CreateContainer
    | StopContainer
    | StartContainer
    | WaitHealthy
    | MarkFailed
    | RemoveContainer
)


@dataclass(frozen=True)
class SwitchPlan:
    """Steps to switch an env to a release; ``undo`` runs if any step from ``switch_at`` on fails."""

    target: str  # the container that should end up running
    version: str
    steps: tuple[DeployStep, ...]
    switch_at: int  # index of the first step that touches the running release
    undo: tuple[DeployStep, ...]


def lock_name(app: str, env: str) -> str:
    return f"envtasks-lock-{app}-{env}"


def first_tcp_port(ports: Sequence[PortSpec]) -> PortSpec | None:
    return next((p for p in ports if p.protocol == "tcp"), None)


def wait_step(settings: Settings, name: str) -> WaitHealthy:
    """Waiting for ``name`` to be healthy, as the env's health settings say."""
    deploy = settings.deploy
    return WaitHealthy(
        name,
        deploy.health,
        deploy.health_timeout,
        deploy.health_grace,
        first_tcp_port(deploy.ports),
    )


def release_environment(settings: Settings, version: str) -> dict[str, str]:
    assert settings.env is not None
    return {**settings.app_environment(), "ENVTASKS_ENV": settings.env, "ENVTASKS_VERSION": version}


def plan_deploy(
    settings: Settings,
    version: str,
    image: str,
    labels: Mapping[str, str],
    releases: Sequence[Release],
) -> SwitchPlan:
    """Create ``<name>-<env>-<version>`` from ``image`` (pinned by digest) and switch to it.

    Runs under the lock, after the pull.
    """
    assert settings.env is not None
    name = container_name(settings.deploy.name, settings.env, version)
    current = current_release(releases)
    current_name = current.name if current else ""
    steps: list[DeployStep] = []
    for release in releases:
        if release.never_started and release.name != current_name:
            # Left by a deploy killed between create and start: it never served, so it goes.
            steps.append(RemoveContainer(release.name))
        elif release.name == name:
            # An older container of the same version stays as history under another name.
            aside = f"{name}-{release.container_id[:8]}"
            steps.append(RenameContainer(name, aside))
            if current_name == name:
                current_name = aside
    environment = release_environment(settings, version)
    steps.append(
        CreateContainer(
            name,
            image,
            tuple(sorted(environment.items())),
            tuple(sorted(labels.items())),
            settings.deploy.ports,
        )
    )
    switch_at = len(steps)
    undo: list[DeployStep] = [StopContainer(name), MarkFailed(name)]
    if current_name:
        steps.append(StopContainer(current_name))
        undo += [StartContainer(current_name), wait_step(settings, current_name)]
    steps += [StartContainer(name), wait_step(settings, name)]
    return SwitchPlan(name, version, tuple(steps), switch_at, tuple(undo))


def plan_rollback(settings: Settings, target: Release, releases: Sequence[Release]) -> SwitchPlan:
    """Start a kept release again in place of the current one. Runs under the lock."""
    current = current_release(releases)
    steps: list[DeployStep] = []
    undo: list[DeployStep] = [StopContainer(target.name)]
    if current is not None:
        steps.append(StopContainer(current.name))
        undo += [StartContainer(current.name), wait_step(settings, current.name)]
    steps += [StartContainer(target.name), wait_step(settings, target.name)]
    return SwitchPlan(target.name, target.version, tuple(steps), 0, tuple(undo))


def release_labels(
    settings: Settings,
    version: str,
    ref: str,
    digest: str,
    revision: str,
    deployed_at: str,
    config: str,
) -> dict[str, str]:
    assert settings.env is not None
    return {
        APP_LABEL: settings.deploy.name,
        ENV_LABEL: settings.env,
        VERSION_LABEL: version,
        IMAGE_LABEL: ref,
        DIGEST_LABEL: digest,
        DEPLOYED_AT_LABEL: deployed_at,
        REVISION_LABEL: revision,
        CONFIG_LABEL: config,
    }


# -- rendering ------------------------------------------------------------------


def deploy_cli_lines(step: DeployStep, masker: Masker) -> list[str]:
    """The docker CLI a person would type for a step (a comment where there is none)."""
    match step:
        case AcquireLock():
            holder = ["--label", "envtasks.lock.holder=<user@host pid>"]
            if step.swarm:
                argv = ["docker", "config", "create", *holder, lock_name(step.app, step.env), "-"]
            else:
                argv = ["docker", "create", "--name", lock_name(step.app, step.env)]
                argv += [*holder, "envtasks/lock"]
        case ReleaseLock():
            kind = ["config", "rm"] if step.swarm else ["rm"]
            argv = ["docker", *kind, lock_name(step.app, step.env)]
        case PullImage():
            argv = ["docker", "pull", step.ref]
        case RenameContainer():
            argv = ["docker", "rename", step.name, step.new_name]
        case CreateContainer():
            argv = ["docker", "create", "--name", step.name, "--init"]
            argv += ["--rm"] if step.auto_remove else ["--restart", step.restart]
            for key, value in step.labels:
                argv += ["--label", f"{key}={value}"]
            for key, value in step.environment:
                argv += ["--env", f"{key}={masker(value)}"]
            for port in step.ports:
                argv += ["--publish", str(port)]
            argv.append(step.image)
        case StopContainer():
            argv = ["docker", "stop", step.name]
        case StartContainer():
            argv = ["docker", "start", step.name]
        case MarkFailed():
            argv = ["docker", "rename", step.name, f"{step.name}-failed-<id>"]
        case RemoveContainer():
            argv = ["docker", "rm", "--force", step.name]
        case WaitHealthy():
            return [f"# wait up to {step.timeout:g}s for {step.name}: {describe_probe(step)}"]
    return [shlex.join(masker(word) for word in argv)]


def describe_probe(step: WaitHealthy) -> str:
    if step.health.path and step.port is not None:
        host = step.port.host_ip if step.port.host_ip not in ("", "0.0.0.0", "::") else "<engine>"
        number = "<any>" if step.port.host_port is None else step.port.host_port
        return f"GET http://{host}:{number}{step.health.path} answers 2xx"
    if step.health.command:
        return f"{shlex.join(step.health.command)} exits 0 inside the container"
    return f"the image's HEALTHCHECK passes, else it keeps running for {step.grace:g}s"


def render_locked(
    app: str, env: str, plan: SwitchPlan, masker: Masker, before: Sequence[DeployStep] = ()
) -> list[str]:
    """The whole run as CLI lines: take the lock, ``before`` steps, the switch, release the lock."""
    steps: list[DeployStep] = [AcquireLock(app, env), *before, *plan.steps, ReleaseLock(app, env)]
    lines = [line for step in steps for line in deploy_cli_lines(step, masker)]
    if plan.undo:
        lines.append("# if a step from the switch on fails, instead:")
        lines += ["#   " + line for step in plan.undo for line in deploy_cli_lines(step, masker)]
    return lines

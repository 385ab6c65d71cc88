"""The Swarm target, as plain data: the service spec, its release history, its secrets.

Swarm keeps one previous spec; envtasks keeps ``ENVTASKS_KEEP`` releases in a
label of the service itself, so any manager can roll back to any of them.
Nothing here talks to Docker.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from .config import HealthCheck, PortSpec, Settings
from .errors import EnvtasksError
from .masking import Masker
from .release import (
    APP_LABEL,
    CURRENT,
    DEPLOYED_AT_LABEL,
    ENV_LABEL,
    FAILED,
    PREVIOUS,
    VERSION_LABEL,
)

HISTORY_LABEL = "envtasks.history"
SECRETS_DIR = "/run/secrets"
HEALTH_INTERVAL_SECONDS = 1
HEALTH_PROBE_TIMEOUT_SECONDS = 2
HEALTH_RETRIES = 3


@dataclass(frozen=True)
class SwarmRelease:
    """One entry of the history kept in the service's label. Holds no secret value."""

    version: str
    ref: str
    digest: str
    deployed_at: str
    revision: str
    status: str
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()  # (KEY, swarm secret name)
    config: str = ""

    def as_row(self) -> dict[str, str]:
        return {
            "version": self.version,
            "digest": self.digest,
            "deployed_at": self.deployed_at,
            "status": self.status,
            "revision": self.revision,
        }


def history_from_labels(labels: Mapping[str, str]) -> list[SwarmRelease]:
    text = labels.get(HISTORY_LABEL, "")
    if not text:
        return []
    try:
        raw = json.loads(text)
        return [
            SwarmRelease(
                **{
                    **item,
                    "env": tuple(tuple(p) for p in item.get("env", ())),
                    "secrets": tuple(tuple(p) for p in item.get("secrets", ())),
                }
            )
            for item in raw
        ]
    except (ValueError, TypeError) as exc:
        raise EnvtasksError(
            f"the service's {HISTORY_LABEL} label is not envtasks' history ({exc})"
        ) from None


def history_label(history: Sequence[SwarmRelease]) -> str:
    return json.dumps([asdict(entry) for entry in history], separators=(",", ":"))


def current_entry(history: Sequence[SwarmRelease]) -> SwarmRelease | None:
    return next((e for e in history if e.status == CURRENT), None)


def _same(a: SwarmRelease, b: SwarmRelease) -> bool:
    return a.version == b.version and a.deployed_at == b.deployed_at


def with_current(history: Sequence[SwarmRelease], entry: SwarmRelease) -> list[SwarmRelease]:
    """``entry`` becomes current: a new one goes first, a kept one keeps its place."""
    demoted = [replace(e, status=PREVIOUS) if e.status == CURRENT else e for e in history]
    if any(_same(e, entry) for e in history):
        return [replace(e, status=CURRENT) if _same(e, entry) else e for e in demoted]
    return [replace(entry, status=CURRENT), *demoted]


def with_failed(history: Sequence[SwarmRelease], entry: SwarmRelease) -> list[SwarmRelease]:
    return [replace(entry, status=FAILED), *history]


def trimmed(
    history: Sequence[SwarmRelease], keep: int
) -> tuple[list[SwarmRelease], list[SwarmRelease]]:
    """(kept, dropped): the ``keep`` newest good entries, the current one always among them,
    and the newest failure; failures never push out a rollback target."""
    kept = [e for e in history if e.status == CURRENT]
    for entry in history:
        if len(kept) >= keep:
            break
        if entry.status != FAILED and entry not in kept:
            kept.append(entry)
    latest_failure = next((e for e in history if e.status == FAILED), None)
    if latest_failure is not None and latest_failure not in kept:
        kept.append(latest_failure)
    ordered = [e for e in history if e in kept]
    return ordered, [e for e in history if e not in kept]


def swarm_rollback_target(history: Sequence[SwarmRelease], version: str | None) -> SwarmRelease:
    usable = [e for e in history if e.status != FAILED]
    kept = ", ".join(f"{e.version} ({e.status})" for e in history) or "none"
    if version:
        match = next((e for e in usable if e.version == version), None)
        if match is None:
            raise EnvtasksError(f"no kept release {version!r} to roll back to; kept: {kept}")
        return match
    current = current_entry(history)
    if current is None:
        raise EnvtasksError(f"no current release to roll back from; kept: {kept}")
    older = usable[usable.index(current) + 1 :]
    if not older:
        raise EnvtasksError(
            f"no release before {current.version} to roll back to; kept: {kept}; "
            "use --version=V for a newer kept one"
        )
    return older[0]


def secret_name(app: str, env: str, key: str, value: str) -> str:
    """Named by content, so a changed value makes a new secret (Swarm secrets are immutable)."""
    digest = hashlib.sha256(f"{app}\0{env}\0{key}\0{value}".encode()).hexdigest()[:12]
    return f"{app}-{env}-{key.lower()}-{digest}"


@dataclass(frozen=True)
class SecretToEnsure:
    name: str
    key: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    image: str
    env: tuple[tuple[str, str], ...]
    secrets: tuple[tuple[str, str], ...]  # (KEY, secret name)
    replicas: int
    ports: tuple[PortSpec, ...]
    health: HealthCheck
    health_timeout: float
    order: str
    labels: tuple[tuple[str, str], ...]
    container_labels: tuple[tuple[str, str], ...]

    @property
    def monitor_seconds(self) -> float:
        """Covers the health check's start period, interval and retries, and one probe."""
        return monitor_seconds(self.health, self.health_timeout)


def service_name(app: str, env: str) -> str:
    return f"{app}-{env}"


def monitor_seconds(health: HealthCheck, health_timeout: float) -> float:
    if not (health.path or health.command):
        return health_timeout + 1
    return health_timeout + HEALTH_INTERVAL_SECONDS * HEALTH_RETRIES + HEALTH_PROBE_TIMEOUT_SECONDS


def update_order(ports: Sequence[PortSpec]) -> str:
    """start-first only when no fixed host port would be taken twice on one node."""
    return "stop-first" if any(p.host_port is not None for p in ports) else "start-first"


def healthcheck_test(health: HealthCheck, ports: Sequence[PortSpec]) -> list[str] | None:
    """The service's Docker HEALTHCHECK for the health setting (None: the image's own)."""
    if health.command:
        return ["CMD", *health.command]
    if not health.path:
        return None
    port = next((p for p in ports if p.protocol == "tcp"), None)
    assert port is not None, "config requires a published port for an HTTP health check"
    url = shlex.quote(f"http://127.0.0.1:{port.container_port}{health.path}")
    # Runs inside the container: use whichever HTTP client the image has.
    return [
        "CMD-SHELL",
        f"wget -q -O /dev/null {url} 2>/dev/null || curl -fsS -o /dev/null {url} 2>/dev/null || "
        f"python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' {url}",
    ]


def plan_service(
    settings: Settings, entry: SwarmRelease, history: Sequence[SwarmRelease]
) -> ServiceSpec:
    """The whole service spec for a history entry (a new release, or one rolled back to)."""
    assert settings.env is not None
    deploy = settings.deploy
    env = dict(entry.env)
    for key, _ in entry.secrets:
        env[f"{key}_FILE"] = f"{SECRETS_DIR}/{key}"
    labels = {
        APP_LABEL: deploy.name,
        ENV_LABEL: settings.env,
        VERSION_LABEL: entry.version,
        HISTORY_LABEL: history_label(history),
    }
    return ServiceSpec(
        name=service_name(deploy.name, settings.env),
        image=entry.ref,
        env=tuple(sorted(env.items())),
        secrets=entry.secrets,
        replicas=deploy.replicas,
        ports=deploy.ports,
        health=deploy.health,
        health_timeout=deploy.health_timeout,
        order=update_order(deploy.ports),
        labels=tuple(sorted(labels.items())),
        container_labels=(
            (APP_LABEL, deploy.name),
            (ENV_LABEL, settings.env),
            (VERSION_LABEL, entry.version),
            # Tells this release's tasks from any other's, even for the same image.
            (DEPLOYED_AT_LABEL, entry.deployed_at),
        ),
    )


def split_environment(
    settings: Settings, version: str
) -> tuple[dict[str, str], list[SecretToEnsure]]:
    """Plain variables, and the secret ones as Swarm secrets (unless SECRETS_AS_ENV)."""
    assert settings.env is not None
    plain = {"ENVTASKS_ENV": settings.env, "ENVTASKS_VERSION": version}
    secrets = []
    for entry in settings.app:
        if entry.secret and not settings.deploy.secrets_as_env:
            name = secret_name(settings.deploy.name, settings.env, entry.key, entry.value)
            secrets.append(SecretToEnsure(name, entry.key, entry.value))
        else:
            plain[entry.key] = entry.value
    return plain, secrets


def render_service(
    spec: ServiceSpec, exists: bool, secrets: Sequence[SecretToEnsure], masker: Masker
) -> list[str]:
    """The docker CLI a person would type for this spec."""
    lines = [
        shlex.join(["docker", "secret", "create", s.name, "-"]) + "   # value on stdin"
        for s in secrets
    ]
    argv = ["docker", "service", "update" if exists else "create"]
    if not exists:
        argv += ["--name", spec.name]
    argv += ["--with-registry-auth", "--replicas", str(spec.replicas)]
    argv += ["--update-parallelism", "1", "--update-order", spec.order]
    argv += [
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        f"{spec.monitor_seconds:g}s",
    ]
    argv += ["--rollback-parallelism", "1", "--rollback-order", spec.order]
    test = healthcheck_test(spec.health, spec.ports)
    if test is not None:
        argv += ["--health-cmd", test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])]
        argv += ["--health-interval", f"{HEALTH_INTERVAL_SECONDS}s"]
        argv += ["--health-retries", str(HEALTH_RETRIES)]
        argv += ["--health-start-period", f"{spec.health_timeout:g}s"]
    for key, value in spec.labels:
        shown = "<history>" if key == HISTORY_LABEL else value
        argv += ["--label-add" if exists else "--label", f"{key}={shown}"]
    for key, value in spec.env:
        argv += ["--env-add" if exists else "--env", f"{key}={masker(value)}"]
    for key, name in spec.secrets:
        argv += ["--secret-add" if exists else "--secret", f"source={name},target={key}"]
    for port in spec.ports:
        published = "" if port.host_port is None else f",published={port.host_port}"
        argv += [
            "--publish-add" if exists else "--publish",
            f"mode=host,target={port.container_port}{published},protocol={port.protocol}",
        ]
    argv += ["--image", spec.image, spec.name] if exists else [spec.image]
    lines.append(shlex.join(masker(word) for word in argv))
    return lines

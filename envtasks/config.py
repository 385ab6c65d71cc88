"""Env files -> validated, typed, frozen settings.

Layers, lowest to highest: ``envs/base.env`` < ``envs/<env>.env`` <
``envs/<env>.local.env`` < the process environment. python-dotenv parses
each file; this module turns what python-dotenv only warns about (malformed
lines) or silently accepts (unset ``${VAR}``) into errors.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream
from dotenv.variables import Literal, Variable, parse_variables

from .errors import EnvtasksError
from .masking import MASK, Masker, is_secret_key

ENV_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_VALUE_BYTES = 64 * 1024
SETTING_PREFIX = "ENVTASKS_"
PROCESS_ENVIRONMENT = "process environment"

# Every setting envtasks knows, with its default ("" = unset).
SETTING_DEFAULTS: Mapping[str, str] = {
    "ENVTASKS_IMAGE": "",
    "ENVTASKS_DOCKERFILE": "Dockerfile",
    "ENVTASKS_CONTEXT": ".",
    "ENVTASKS_BUILD_ARGS": "",
    "ENVTASKS_REGISTRY_USERNAME": "",
    "ENVTASKS_REGISTRY_PASSWORD": "",
    "ENVTASKS_SECRETS": "",
    "ENVTASKS_VERSION": "",
    "ENVTASKS_NAME": "",
    "ENVTASKS_PORTS": "",
    "ENVTASKS_HEALTHCHECK": "",
    "ENVTASKS_HEALTH_TIMEOUT": "30",
    "ENVTASKS_HEALTH_GRACE": "5",
    "ENVTASKS_KEEP": "5",
    "ENVTASKS_DOCKER_HOST": "",
    "ENVTASKS_TARGET": "container",
    "ENVTASKS_REPLICAS": "1",
    "ENVTASKS_SECRETS_AS_ENV": "false",
}
TARGETS = ("container", "swarm")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
# Settings that only make sense per run, so only the process environment may give them.
PROCESS_ONLY_SETTINGS = frozenset({"ENVTASKS_VERSION"})

_REGISTRY_HOST = r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9.-]+:[0-9]+|\[[0-9a-fA-F:]+\](?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REPOSITORY = re.compile(
    rf"(?P<registry>{_REGISTRY_HOST})/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
)
BUILD_ARG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONTAINER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
PORT_SPEC = re.compile(
    r"(?:(?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>[0-9]{0,5}):(?P<container>[0-9]{1,5})"
    r"(?:/(?P<proto>tcp|udp))?"
)
HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")
DOCKER_HOST = re.compile(
    r"unix:///\S+|tcp://[A-Za-z0-9.-]+:[0-9]+|ssh://(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::[0-9]+)?"
)


@dataclass(frozen=True)
class Entry:
    """One resolved variable and the layer it came from."""

    key: str
    value: str
    origin: str
    secret: bool

    @property
    def shown(self) -> str:
        return MASK if self.secret and self.value else self.value


@dataclass(frozen=True)
class PortSpec:
    """One published port, ``[ip:][host]:container[/protocol]``; no host port = any free one."""

    host_ip: str
    host_port: int | None
    container_port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        host = "" if self.host_port is None else str(self.host_port)
        proto = "" if self.protocol == "tcp" else f"/{self.protocol}"
        return f"{ip}{host}:{self.container_port}{proto}"


@dataclass(frozen=True)
class HealthCheck:
    """How a new release proves itself: an HTTP path, a command, or the image's own check."""

    path: str = ""  # HTTP GET through the first published port must answer 2xx
    command: tuple[str, ...] = ()  # run inside the container (no shell) must exit 0

    def __str__(self) -> str:
        if self.path:
            return f"GET {self.path}"
        if self.command:
            return "cmd: " + shlex.join(self.command)
        return "the image's HEALTHCHECK, else running for the grace period"


@dataclass(frozen=True)
class DeploySettings:
    name: str
    ports: tuple[PortSpec, ...]
    health: HealthCheck
    health_timeout: float
    health_grace: float
    keep: int
    docker_hosts: tuple[str, ...]  # empty: the local engine (DOCKER_HOST or the default socket)
    target: str = "container"
    replicas: int = 1
    secrets_as_env: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything envtasks needs for one environment (or for the env-agnostic build)."""

    root: Path
    env: str | None
    image: str
    registry: str
    dockerfile: Path
    context: Path
    build_args: tuple[tuple[str, str], ...]
    registry_username: str
    registry_password: str = field(repr=False)
    process_version: str
    settings: tuple[Entry, ...]
    app: tuple[Entry, ...]
    masker: Masker = field(repr=False)
    deploy: DeploySettings

    def app_environment(self) -> dict[str, str]:
        return {e.key: e.value for e in self.app}

    def mask(self, text: str) -> str:
        return self.masker(text)


@dataclass(frozen=True)
class _Raw:
    value: str
    origin: str
    literal: bool  # single-quoted or from the process environment: no ${VAR} expansion
    file: str


def validate_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name or ""):
        raise EnvtasksError(
            f"invalid env name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit (e.g. --env=prod)"
        )
    return name


def available_envs(envs_dir: Path) -> list[str]:
    if not envs_dir.is_dir():
        return []
    names = []
    for path in envs_dir.glob("*.env"):
        stem = path.name[: -len(".env")]
        if stem != "base" and not stem.endswith(".local") and ENV_NAME.fullmatch(stem):
            names.append(stem)
    return sorted(names)


def _parse_file(path: Path, root: Path, environ: Mapping[str, str]) -> dict[str, _Raw]:
    shown = _relative(path, root)
    try:
        # utf-8-sig drops a BOM; universal newlines turn CRLF files into plain lines.
        with path.open(encoding="utf-8-sig", newline=None) as stream:
            bindings = list(parse_stream(stream))
    except UnicodeDecodeError as exc:
        raise EnvtasksError(
            f"{shown}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise EnvtasksError(f"{shown}: cannot read ({exc.strerror})") from None
    values: dict[str, _Raw] = {}
    for binding in bindings:
        line = binding.original.line
        if binding.error:
            # Only the part before '=' is shown: the rest may be a secret.
            head = binding.original.string.strip().split("=", 1)[0][:40]
            raise EnvtasksError(
                f"{shown} line {line}: cannot parse the line starting {head!r}; "
                "write KEY=VALUE and close every quote"
            )
        if binding.key is None:
            continue
        key = binding.key
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
            raise EnvtasksError(
                f"{shown} line {line}: invalid key {key!r}; use letters, digits and '_'"
            )
        origin = f"{shown}:{line}"
        if key in values:
            first = values[key].origin.rsplit(":", 1)[-1]
            raise EnvtasksError(
                f"{shown} line {line}: {key} is already set on line {first}; keep one of them"
            )
        if binding.value is None:
            # A bare KEY passes the process environment's value through, as in Compose.
            if key not in environ:
                raise EnvtasksError(
                    f"{shown} line {line}: {key} has no value and is not set in the process "
                    f"environment; write {key}=VALUE (or {key}= for empty)"
                )
            values[key] = _Raw(environ[key], PROCESS_ENVIRONMENT, True, shown)
            continue
        if len(binding.value.encode()) > MAX_VALUE_BYTES:
            raise EnvtasksError(
                f"{shown} line {line}: the value of {key} is {len(binding.value.encode())} bytes; "
                f"the limit is {MAX_VALUE_BYTES}: mount a file instead"
            )
        if "\0" in binding.value:
            raise EnvtasksError(f"{shown} line {line}: the value of {key} contains a NUL byte")
        raw = binding.original.string.split("=", 1)[1].lstrip()
        values[key] = _Raw(binding.value, origin, raw.startswith("'"), shown)
    return values


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _interpolate(merged: dict[str, _Raw], environ: Mapping[str, str]) -> dict[str, str]:
    resolved: dict[str, str] = {}

    def resolve(key: str, chain: tuple[str, ...]) -> str:
        if key in resolved:
            return resolved[key]
        raw = merged[key]
        if raw.literal:
            resolved[key] = raw.value
            return raw.value
        parts = []
        for atom in parse_variables(raw.value):
            if isinstance(atom, Literal):
                parts.append(atom.value)
                continue
            assert isinstance(atom, Variable)
            name, default = atom.name, atom.default
            if name in chain:
                cycle = " -> ".join((*chain, key, name))
                raise EnvtasksError(f"{raw.file}: ${{{name}}} refers to itself ({cycle})")
            # KEY=${KEY:-x} means "the process environment's KEY, else x", not a loop.
            declared = name in merged and name != key
            if declared:
                value = resolve(name, (*chain, key))
            elif name in environ:
                value = environ[name]
            else:
                value = ""
            if value == "" and default is not None:
                value = default
            elif not declared and name not in environ:
                raise EnvtasksError(
                    f"{raw.file}: {key} uses ${{{name}}} but {name} is set in no env file and "
                    f"not in the process environment; set it or write ${{{name}:-default}}"
                )
            parts.append(value)
        resolved[key] = "".join(parts)
        return resolved[key]

    for key in merged:
        resolve(key, ())
    return resolved


def _unknown_setting(key: str, where: str) -> EnvtasksError:
    known = sorted(SETTING_DEFAULTS)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "known settings: " + ", ".join(known)
    return EnvtasksError(f"{where}: unknown setting {key}; {hint}")


def load_settings(root: Path, env: str | None, environ: Mapping[str, str]) -> Settings:
    """Read the layers for ``env`` (or only ``base.env`` when env is None) and validate them."""
    root = root.resolve()
    envs_dir = root / "envs"
    layers: list[Path] = []
    base = envs_dir / "base.env"
    if base.is_file():
        layers.append(base)
    if env is not None:
        validate_env_name(env)
        env_file = envs_dir / f"{env}.env"
        if not env_file.is_file():
            existing = available_envs(envs_dir)
            listing = (
                ", ".join(existing)
                if existing
                else f"none: create {_relative(envs_dir, root)}/{env}.env"
            )
            raise EnvtasksError(f"unknown env {env!r}; envs that exist: {listing}")
        layers.append(env_file)
        local = envs_dir / f"{env}.local.env"
        if local.is_file():
            layers.append(local)

    merged: dict[str, _Raw] = {}
    for path in layers:
        for key, raw in _parse_file(path, root, environ).items():
            if key.startswith(SETTING_PREFIX) and key not in SETTING_DEFAULTS:
                raise _unknown_setting(key, f"{raw.file} line {raw.origin.rsplit(':', 1)[-1]}")
            if key in PROCESS_ONLY_SETTINGS:
                raise EnvtasksError(
                    f"{raw.origin}: {key} may only come from the process environment or --version"
                )
            merged[key] = raw
    for key, value in environ.items():
        if key.startswith(SETTING_PREFIX):
            if key not in SETTING_DEFAULTS:
                raise _unknown_setting(key, PROCESS_ENVIRONMENT)
            merged[key] = _Raw(value, PROCESS_ENVIRONMENT, True, PROCESS_ENVIRONMENT)
        elif key in merged:
            merged[key] = _Raw(value, PROCESS_ENVIRONMENT, True, PROCESS_ENVIRONMENT)

    values = _interpolate(merged, environ)
    extra_secrets = [k.strip() for k in values.get("ENVTASKS_SECRETS", "").split(",") if k.strip()]
    entries = [
        Entry(key, values[key], merged[key].origin, is_secret_key(key, extra_secrets))
        for key in merged
    ]
    masker = Masker.of(e.value for e in entries if e.secret)
    settings_entries = tuple(
        sorted((e for e in entries if e.key.startswith(SETTING_PREFIX)), key=lambda e: e.key)
    )
    app_entries = tuple(
        sorted((e for e in entries if not e.key.startswith(SETTING_PREFIX)), key=lambda e: e.key)
    )

    def setting(key: str) -> str:
        return values.get(key, SETTING_DEFAULTS[key])

    def origin(key: str) -> str:
        return merged[key].origin if key in merged else "default"

    image = setting("ENVTASKS_IMAGE").strip()
    registry = _validate_image(image, origin("ENVTASKS_IMAGE"), env)
    dockerfile = _inside_project(
        root, setting("ENVTASKS_DOCKERFILE"), "ENVTASKS_DOCKERFILE", origin
    )
    context = _inside_project(root, setting("ENVTASKS_CONTEXT"), "ENVTASKS_CONTEXT", origin)
    build_args = _parse_build_args(setting("ENVTASKS_BUILD_ARGS"), origin("ENVTASKS_BUILD_ARGS"))
    masker = masker.merged(Masker.of(v for k, v in build_args if is_secret_key(k, extra_secrets)))
    return Settings(
        root=root,
        env=env,
        image=image,
        registry=registry,
        dockerfile=dockerfile,
        context=context,
        build_args=build_args,
        registry_username=setting("ENVTASKS_REGISTRY_USERNAME"),
        registry_password=setting("ENVTASKS_REGISTRY_PASSWORD"),
        process_version=environ.get("ENVTASKS_VERSION", ""),
        settings=settings_entries,
        app=app_entries,
        masker=masker,
        deploy=_deploy_settings(image, env, setting, origin),
    )


def _deploy_settings(
    image: str, env: str | None, setting: Callable[[str], str], origin: Callable[[str], str]
) -> DeploySettings:
    name = setting("ENVTASKS_NAME").strip() or image.rsplit("/", 1)[-1]
    if not CONTAINER_NAME.fullmatch(name):
        raise EnvtasksError(
            f"{origin('ENVTASKS_NAME')}: ENVTASKS_NAME={name[:60]!r} must be lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        )
    ports = tuple(
        parse_port(item.strip(), origin("ENVTASKS_PORTS"))
        for item in setting("ENVTASKS_PORTS").split(",")
        if item.strip()
    )
    health = _parse_health(setting("ENVTASKS_HEALTHCHECK").strip(), origin("ENVTASKS_HEALTHCHECK"))
    # base.env alone (for build and push) need not say how each env publishes its ports.
    if env is not None and health.path and not any(p.protocol == "tcp" for p in ports):
        raise EnvtasksError(
            f"{origin('ENVTASKS_HEALTHCHECK')}: ENVTASKS_HEALTHCHECK={health.path} is probed "
            "through the first published port, but ENVTASKS_PORTS publishes none"
        )
    hosts = tuple(h.strip() for h in setting("ENVTASKS_DOCKER_HOST").split(",") if h.strip())
    for host in hosts:
        if not DOCKER_HOST.fullmatch(host):
            raise EnvtasksError(
                f"{origin('ENVTASKS_DOCKER_HOST')}: ENVTASKS_DOCKER_HOST item {host[:80]!r} must be "
                "unix:///path, tcp://host:port or ssh://[user@]host[:port]"
            )
    target = setting("ENVTASKS_TARGET").strip()
    if target not in TARGETS:
        raise EnvtasksError(
            f"{origin('ENVTASKS_TARGET')}: ENVTASKS_TARGET={target[:40]!r} must be "
            + " or ".join(TARGETS)
        )
    replicas = int(_number(setting, origin, "ENVTASKS_REPLICAS", 1, 1000, integer=True))
    if replicas > 1 and target != "swarm":
        raise EnvtasksError(
            f"{origin('ENVTASKS_REPLICAS')}: ENVTASKS_REPLICAS={replicas} needs ENVTASKS_TARGET=swarm"
        )
    if target == "swarm" and any(p.host_ip for p in ports):
        raise EnvtasksError(
            f"{origin('ENVTASKS_PORTS')}: Swarm publishes on every address of a node; "
            "drop the IP from ENVTASKS_PORTS (e.g. 8080:8080, or :8080 for any free port)"
        )
    secrets_as_env = setting("ENVTASKS_SECRETS_AS_ENV").strip().lower()
    if secrets_as_env not in (*_TRUE, *_FALSE):
        raise EnvtasksError(
            f"{origin('ENVTASKS_SECRETS_AS_ENV')}: ENVTASKS_SECRETS_AS_ENV={secrets_as_env[:20]!r} "
            "must be true or false"
        )
    return DeploySettings(
        name=name,
        ports=ports,
        health=health,
        health_timeout=_number(setting, origin, "ENVTASKS_HEALTH_TIMEOUT", 1, 3600),
        health_grace=_number(setting, origin, "ENVTASKS_HEALTH_GRACE", 0, 600),
        keep=int(_number(setting, origin, "ENVTASKS_KEEP", 1, 100, integer=True)),
        docker_hosts=hosts,
        target=target,
        replicas=replicas,
        secrets_as_env=secrets_as_env in _TRUE,
    )


def parse_port(spec: str, origin: str) -> PortSpec:
    match = PORT_SPEC.fullmatch(spec)
    problem = "" if match else "use [ip:][host]:container, e.g. 127.0.0.1:8080:8080"
    if match:
        host_port = int(match["host"]) if match["host"] else None
        container_port = int(match["container"])
        if not (
            1 <= (1 if host_port is None else host_port) <= 65535 and 1 <= container_port <= 65535
        ):
            problem = "ports must be between 1 and 65535"
        elif match["ip"] and not _is_ip(match["ip"].strip("[]")):
            problem = f"{match['ip']} is not an IP address"
    if problem:
        raise EnvtasksError(f"{origin}: ENVTASKS_PORTS item {spec[:60]!r} is invalid; {problem}")
    assert match is not None
    return PortSpec(
        (match["ip"] or "").strip("[]"), host_port, container_port, match["proto"] or "tcp"
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _parse_health(text: str, origin: str) -> HealthCheck:
    if not text:
        return HealthCheck()
    if text.startswith("cmd:"):
        try:
            argv = tuple(shlex.split(text[4:]))
        except ValueError as exc:
            raise EnvtasksError(f"{origin}: ENVTASKS_HEALTHCHECK command: {exc}") from None
        if not argv:
            raise EnvtasksError(f"{origin}: ENVTASKS_HEALTHCHECK=cmd: needs a command")
        return HealthCheck(command=argv)
    if not HEALTH_PATH.fullmatch(text):
        raise EnvtasksError(
            f"{origin}: ENVTASKS_HEALTHCHECK={text[:60]!r} must be an HTTP path like /healthz "
            "or cmd:<command>"
        )
    return HealthCheck(path=text)


def _number(
    setting: Callable[[str], str],
    origin: Callable[[str], str],
    key: str,
    low: float,
    high: float,
    integer: bool = False,
) -> float:
    text = setting(key).strip()
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    if value is None or not (low <= value <= high):
        kind = "a whole number" if integer else "a number of seconds"
        raise EnvtasksError(
            f"{origin(key)}: {key}={text[:40]!r} must be {kind} from {low:g} to {high:g}"
        )
    return float(value)


def _validate_image(image: str, origin: str, env: str | None) -> str:
    where = f"envs/{env}.env" if env else "envs/base.env"
    if not image:
        raise EnvtasksError(
            f"ENVTASKS_IMAGE is not set; add e.g. ENVTASKS_IMAGE=localhost:5000/shop to {where}"
        )
    repository = image.split("@")[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    if repository != image:
        raise EnvtasksError(
            f"{origin}: ENVTASKS_IMAGE={image!r} must be a repository without tag or digest "
            f"(e.g. {repository}); envtasks tags it with the version"
        )
    match = IMAGE_REPOSITORY.fullmatch(image)
    if match is None:
        first = image.split("/")[0]
        if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
            raise EnvtasksError(
                f"{origin}: ENVTASKS_IMAGE={image!r} must include the registry host, "
                "e.g. localhost:5000/shop or registry.example.com/team/shop"
            )
        raise EnvtasksError(
            f"{origin}: ENVTASKS_IMAGE={image!r} is not a valid image repository; use lowercase "
            "letters, digits and '.', '_', '-' separators, e.g. localhost:5000/shop"
        )
    return match.group("registry")


def _inside_project(root: Path, value: str, key: str, origin: Callable[[str], str]) -> Path:
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise EnvtasksError(f"{origin(key)}: {key}={value!r} points outside the project {root}")
    return path


def _parse_build_args(text: str, origin: str) -> tuple[tuple[str, str], ...]:
    args = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not BUILD_ARG_KEY.fullmatch(key.strip()):
            raise EnvtasksError(
                f"{origin}: ENVTASKS_BUILD_ARGS item {key.strip()[:40]!r} must be KEY=VALUE "
                "(comma-separated)"
            )
        args.append((key.strip(), value))
    return tuple(args)

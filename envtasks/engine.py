"""The engine adapter: the only code that talks to Docker.

It carries out the steps of ``envtasks.plan`` through the Docker SDK (and,
for BuildKit builds that docker-py cannot do, the docker CLI as an argv
list), and turns every engine or registry failure into ``EnvtasksError``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from .errors import EnvtasksError
from .plan import BuildImage, cli_argv, cli_environment

Say = Callable[[str], None]

# Registry failures worth another try: the network or the registry's own server side.
_TRANSIENT = (
    "connection refused",
    "connection reset",
    "timeout",
    "timed out",
    "i/o timeout",
    "eof",
    "502",
    "503",
    "504",
    "500 internal server error",
    "internal server error",
    "service unavailable",
    "bad gateway",
    "too many requests",
    "no such host",
)
PUSH_ATTEMPTS = 4
PROGRESS_EVERY_SECONDS = 2.0


def is_transient(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _TRANSIENT)


def default_docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class RegistryAuth:
    registry: str
    username: str = ""
    password: str = field(default="", repr=False)

    def config(self) -> dict[str, str] | None:
        if not self.username:
            return None
        return {
            "username": self.username,
            "password": self.password,
            "serveraddress": self.registry,
        }


@contextmanager
def _engine_errors(address: str, doing: str) -> Iterator[None]:
    try:
        yield
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        if isinstance(exc, docker.errors.APIError):
            raise EnvtasksError(f"{doing} failed: {exc.explanation or exc}") from None
        raise EnvtasksError(
            f"{doing} failed: the Docker engine at {address} is not reachable ({_first_line(exc)}); "
            "start dockerd or point DOCKER_HOST at a running engine"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class Engine:
    """One Docker engine, reached through the SDK."""

    def __init__(self, client: Any, address: str) -> None:
        self._client = client
        self.address = address

    @classmethod
    def connect(cls, docker_host: str | None = None) -> Engine:
        address = docker_host or default_docker_host()
        try:
            client = docker.DockerClient(base_url=address, version="auto", timeout=120)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EnvtasksError(
                f"the Docker engine at {address} is not reachable ({_first_line(exc)}); "
                "start dockerd or point DOCKER_HOST at a running engine"
            ) from None
        return cls(client, address)

    def close(self) -> None:
        self._client.close()

    # -- images ---------------------------------------------------------

    def build(self, step: BuildImage, say: Say) -> None:
        if step.buildkit:
            self._build_with_cli(step, say)
            return
        try:
            dockerfile = str(step.dockerfile.relative_to(step.context))
        except ValueError:
            dockerfile = str(step.dockerfile)
        with _engine_errors(self.address, f"building {step.ref}"):
            stream = self._client.api.build(
                path=str(step.context),
                dockerfile=dockerfile,
                tag=step.ref,
                labels=dict(step.labels),
                buildargs=dict(step.build_args),
                nocache=step.no_cache,
                rm=True,
                forcerm=True,
                decode=True,
            )
            built = False
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    raise EnvtasksError(f"building {step.ref} failed: {str(detail).strip()}")
                text = chunk.get("stream", "")
                if text.strip():
                    for line in text.rstrip("\n").splitlines():
                        say(line)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    built = True
            if not built and not self.image_exists(step.ref):
                raise EnvtasksError(f"building {step.ref} failed: the engine reported no image")

    def _build_with_cli(self, step: BuildImage, say: Say) -> None:
        docker_cli, build_words = buildkit_cli()
        argv = [docker_cli, *build_words, *cli_argv(step, step.context)[2:]]
        env = {**os.environ, **cli_environment(step), "DOCKER_HOST": self.address}
        try:
            process = subprocess.Popen(
                argv,
                cwd=step.context,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise EnvtasksError(
                f"cannot run {docker_cli} for a BuildKit build: {exc.strerror}"
            ) from None
        assert process.stdout is not None
        last_lines: list[str] = []
        for line in process.stdout:
            say(line.rstrip("\n"))
            last_lines = [*last_lines[-4:], line.strip()]
        if process.wait() != 0:
            reason = next((x for x in reversed(last_lines) if x), "see the output above")
            raise EnvtasksError(f"building {step.ref} with BuildKit failed: {reason}")

    def image_exists(self, ref: str) -> bool:
        with _engine_errors(self.address, f"looking up {ref}"):
            try:
                self._client.api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                return False
        return True

    def image_labels(self, ref: str) -> Mapping[str, str]:
        with _engine_errors(self.address, f"inspecting {ref}"):
            try:
                info = self._client.api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                raise EnvtasksError(f"image {ref} does not exist on {self.address}") from None
        return dict(info.get("Config", {}).get("Labels") or {})

    def require_image(self, ref: str, hint: str) -> None:
        if not self.image_exists(ref):
            raise EnvtasksError(
                f"image {ref} does not exist on the engine at {self.address}; {hint}"
            )

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        with _engine_errors(self.address, f"tagging {source} as {target}"):
            try:
                self._client.api.tag(source, repository, tag)
            except docker.errors.ImageNotFound:
                raise EnvtasksError(f"cannot tag {source}: no such image; build it first") from None

    # -- registry ---------------------------------------------------------

    def login(self, auth: RegistryAuth) -> None:
        with _engine_errors(self.address, f"logging in to {auth.registry}"):
            try:
                self._client.login(
                    username=auth.username,
                    password=auth.password,
                    registry=auth.registry,
                    reauth=True,
                )
            except docker.errors.APIError as exc:
                raise EnvtasksError(
                    f"the registry {auth.registry} refused the login of {auth.username!r} "
                    f"({exc.explanation or exc}); check ENVTASKS_REGISTRY_USERNAME and "
                    "ENVTASKS_REGISTRY_PASSWORD"
                ) from None

    def push(
        self, ref: str, auth: RegistryAuth, say: Say, sleep: Callable[[float], None] = time.sleep
    ) -> str:
        """Push ``ref``, retrying transient failures, and return the digest the registry has."""
        pushed_digest = ""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                pushed_digest = self._push_once(ref, auth, say)
                break
            except _PushFailed as failure:
                if not failure.transient or attempt == PUSH_ATTEMPTS:
                    raise EnvtasksError(
                        f"pushing {ref} failed{' after ' + str(attempt) + ' attempts' if attempt > 1 else ''}: "
                        f"{failure.message}; {_registry_hint(failure.message, auth.registry)}"
                    ) from None
                delay = 0.5 * 2 ** (attempt - 1)
                say(
                    f"push: {failure.message} (transient; retrying in {delay:g}s, attempt {attempt + 1}/{PUSH_ATTEMPTS})"
                )
                sleep(delay)
        registry_digest = self.registry_digest(ref, auth)
        if pushed_digest and pushed_digest != registry_digest:
            raise EnvtasksError(
                f"pushed {ref} as {pushed_digest} but the registry now serves {registry_digest}; "
                "someone pushed the same tag at the same time, push again"
            )
        return registry_digest

    def _push_once(self, ref: str, auth: RegistryAuth, say: Say) -> str:
        repository, _, tag = ref.rpartition(":")
        progress = _PushProgress(say)
        digest = ""
        try:
            stream = self._client.api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=auth.config()
            )
            for chunk in stream:
                # docker-py raises nothing for a failed push: the error is inside the stream.
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    raise _PushFailed(str(detail).strip())
                digest = chunk.get("aux", {}).get("Digest", digest)
                progress.update(chunk)
        except docker.errors.ImageNotFound:
            raise EnvtasksError(
                f"cannot push {ref}: no such image on {self.address}; build it first"
            ) from None
        except docker.errors.APIError as exc:
            raise _PushFailed(str(exc.explanation or exc)) from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            raise EnvtasksError(
                f"pushing {ref} failed: the Docker engine at {self.address} is not reachable "
                f"({_first_line(exc)})"
            ) from None
        progress.finish()
        return digest

    def registry_digest(self, ref: str, auth: RegistryAuth) -> str:
        """The digest the registry serves for ``ref``, asked through the engine."""
        with _engine_errors(self.address, f"resolving {ref} in the registry"):
            try:
                info = self._client.api.inspect_distribution(ref, auth_config=auth.config())
            except docker.errors.APIError as exc:
                message = str(exc.explanation or exc)
                raise EnvtasksError(
                    f"cannot resolve {ref} in the registry: {message}; {_registry_hint(message, auth.registry)}"
                ) from None
        digest = str(info.get("Descriptor", {}).get("digest", ""))
        if not digest.startswith("sha256:"):
            raise EnvtasksError(f"the registry returned no digest for {ref}")
        return digest


def buildkit_cli() -> tuple[str, list[str]]:
    """A docker CLI on PATH that can build with BuildKit, and the words that start such a build.

    docker-py only speaks the classic builder. CLIs from 23 on need the buildx
    plugin for BuildKit; older ones have it built in behind DOCKER_BUILDKIT=1.
    """
    candidates = [Path(d) / "docker" for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    for cli in dict.fromkeys(c for c in candidates if os.access(c, os.X_OK)):
        if _quiet_ok([str(cli), "buildx", "version"]):
            return str(cli), ["buildx", "build", "--load"]
        version = _quiet_output([str(cli), "version", "--format", "{{.Client.Version}}"])
        major = version.split(".")[0]
        if major.isdigit() and int(major) < 23:
            return str(cli), ["build"]
    raise EnvtasksError(
        "this Dockerfile needs BuildKit (it uses '# syntax=', 'RUN --mount' or a heredoc), "
        "and no docker CLI on PATH can build with it; install the docker buildx plugin"
    )


def _quiet_ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _quiet_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


class _PushFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.transient = is_transient(message)


def _registry_hint(message: str, registry: str) -> str:
    lowered = message.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        return "check ENVTASKS_REGISTRY_USERNAME and ENVTASKS_REGISTRY_PASSWORD"
    if "not found" in lowered or "unknown" in lowered:
        return "check the version, and push it first"
    return f"check that the registry {registry} is running and reachable from the engine"


class _PushProgress:
    """Prints each layer's outcome, and the bytes sent so far every few seconds."""

    def __init__(self, say: Say, clock: Callable[[], float] = time.monotonic) -> None:
        self._say = say
        self._clock = clock
        self._layers: dict[str, tuple[int, int]] = {}
        self._next_report = clock() + PROGRESS_EVERY_SECONDS
        self._reported = False

    def update(self, chunk: Mapping[str, Any]) -> None:
        status = str(chunk.get("status", ""))
        layer = str(chunk.get("id", ""))
        detail = chunk.get("progressDetail") or {}
        if status == "Pushing" and layer and detail.get("total"):
            self._layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif status in ("Pushed", "Layer already exists") or status.startswith("Mounted from"):
            self._say(f"push: {layer}: {status}")
        elif "digest:" in status:
            self._say(f"push: {status}")
        now = self._clock()
        if self._layers and now >= self._next_report:
            self._next_report = now + PROGRESS_EVERY_SECONDS
            self._reported = True
            self._say(f"push: {_progress_line(self._layers.values())}")

    def finish(self) -> None:
        if self._reported:
            self._say(f"push: {_progress_line(self._layers.values())}")


def _progress_line(layers: Iterable[tuple[int, int]]) -> str:
    items = list(layers)
    done = sum(min(c, t) for c, t in items)
    total = sum(t for _, t in items) or 1
    return f"{done / 1e6:.1f} of {total / 1e6:.1f} MB sent ({100 * done // total}%)"

"""The engine adapter: the only code that talks to Docker.

It carries out the steps of ``envtasks.plan`` through the Docker SDK (and,
for BuildKit builds that docker-py cannot do, the docker CLI as an argv
list), and turns every engine or registry failure into ``EnvtasksError``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions

from .errors import EnvtasksError
from .plan import BuildImage, cli_argv, cli_environment
from .release import (
    APP_LABEL,
    CONFIG_LABEL,
    DEPLOYED_AT_LABEL,
    DIGEST_LABEL,
    ENV_LABEL,
    IMAGE_LABEL,
    REVISION_LABEL,
    VERSION_LABEL,
    CreateContainer,
    Release,
)
from .swarm import (
    HEALTH_INTERVAL_SECONDS,
    HEALTH_PROBE_TIMEOUT_SECONDS,
    HEALTH_RETRIES,
    ServiceSpec,
    healthcheck_test,
)

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
REGISTRY_ATTEMPTS = 4
LOCK_IMAGE = "envtasks/lock:1"
PROGRESS_EVERY_SECONDS = 2.0


def is_transient(message: str) -> bool:
    lowered = message.lower()
    if "after attempts=" in lowered:
        return False  # the engine has retried this download itself already
    return any(marker in lowered for marker in _TRANSIENT)


def default_docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_local_address(address: str) -> bool:
    """An engine on this machine, whose local images a deploy may use."""
    return address.startswith(("unix://", "npipe://")) or address.startswith(
        ("tcp://127.", "tcp://localhost:")
    )


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
        raise EnvtasksError(f"{doing} failed: {_unreachable(address, exc)}") from None


def _unreachable(address: str, exc: BaseException) -> str:
    return (
        f"the Docker engine at {address} is not reachable ({_why_unreachable(exc)}); "
        "start dockerd or point DOCKER_HOST at a running engine"
    )


def _why_unreachable(exc: BaseException) -> str:
    """The operating system's words for a failed connection (``Connection refused``), if any."""
    pending: list[object] = [exc]
    for _ in range(20):
        if not pending:
            break
        seen = pending.pop(0)
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        if isinstance(seen, BaseException):
            pending += [*seen.args, seen.__cause__, seen.__context__, getattr(seen, "reason", None)]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class _PingNegotiatedClient(docker.APIClient):  # type: ignore[misc]
    """Learns the engine's API version from ``/_ping``, as the docker CLI does."""

    def _retrieve_server_version(self) -> str:
        # docker-py asks /version, which waits for containerd and runc (~8 ms); /_ping takes ~1 ms.
        response = self.get(f"{self.base_url}/_ping", timeout=self.timeout)
        self._raise_for_status(response)
        version = response.headers.get("Api-Version")
        return str(version) if version else str(super()._retrieve_server_version())


class Engine:
    """One Docker engine, reached through the SDK."""

    def __init__(self, api: Any, address: str) -> None:
        self._api = api
        self.address = address

    @classmethod
    def connect(cls, docker_host: str | None = None) -> Engine:
        """Connects and negotiates the API version: that exchange is also the liveness check."""
        address = docker_host or default_docker_host()
        try:
            # ssh:// goes through the system ssh client (keys, agent and config as the user has them).
            api = _PingNegotiatedClient(
                base_url=address,
                version="auto",
                timeout=120,
                use_ssh_client=address.startswith("ssh://"),
            )
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EnvtasksError(_unreachable(address, exc)) from None
        return cls(api, address)

    def close(self) -> None:
        self._api.close()

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
            stream = self._api.build(
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
                if (detail := stream_error(chunk)) is not None:
                    raise EnvtasksError(f"building {step.ref} failed: {detail.strip()}")
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
        return self.find_image(ref) is not None

    def find_image(self, ref: str) -> dict[str, Any] | None:
        """The engine's record of an image, or None when it has no such image."""
        with _engine_errors(self.address, f"looking up {ref}"):
            try:
                return dict(self._api.inspect_image(ref))
            except docker.errors.ImageNotFound:
                return None

    def require_image(self, ref: str, hint: str) -> None:
        if not self.image_exists(ref):
            raise EnvtasksError(
                f"image {ref} does not exist on the engine at {self.address}; {hint}"
            )

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        with _engine_errors(self.address, f"tagging {source} as {target}"):
            try:
                self._api.tag(source, repository, tag)
            except docker.errors.ImageNotFound:
                raise EnvtasksError(f"cannot tag {source}: no such image; build it first") from None

    # -- registry ---------------------------------------------------------

    def login(self, auth: RegistryAuth) -> None:
        with _engine_errors(self.address, f"logging in to {auth.registry}"):
            try:
                self._api.login(
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
        pushed_digest = _retrying(
            "push", ref, auth, say, sleep, lambda: self._push_once(ref, auth, say)
        )
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
        missing = f"cannot push {ref}: no such image on {self.address}; build it first"
        with self._transfer_errors("push", ref, missing):
            stream = self._api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=auth.config()
            )
            for chunk in stream:
                # docker-py raises nothing for a failed push: the error is inside the stream.
                if (detail := stream_error(chunk)) is not None:
                    raise _RegistryFailure(detail.strip())
                digest = chunk.get("aux", {}).get("Digest", digest)
                progress.update(chunk)
        progress.finish()
        return digest

    def registry_digest(self, ref: str, auth: RegistryAuth) -> str:
        """The digest the registry serves for ``ref``, asked through the engine."""
        with _engine_errors(self.address, f"resolving {ref} in the registry"):
            try:
                info = self._api.inspect_distribution(ref, auth_config=auth.config())
            except docker.errors.APIError as exc:
                message = _without_echo(str(exc.explanation or exc))
                raise EnvtasksError(
                    f"cannot resolve {ref} in the registry: {message}; {_registry_hint(message, auth.registry)}"
                ) from None
        digest = str(info.get("Descriptor", {}).get("digest", ""))
        if not digest.startswith("sha256:"):
            raise EnvtasksError(f"the registry returned no digest for {ref}")
        return digest

    # -- containers ---------------------------------------------------------

    def list_releases(self, app: str, env: str) -> list[Release]:
        # The version label tells releases from the lock, which carries app and env too.
        filters = {"label": [f"{APP_LABEL}={app}", f"{ENV_LABEL}={env}", VERSION_LABEL]}
        with _engine_errors(self.address, "listing releases"):
            containers = self._api.containers(all=True, filters=filters)
        releases = []
        for info in containers:
            labels = info.get("Labels") or {}
            releases.append(
                Release(
                    name=info["Names"][0].lstrip("/"),
                    version=labels.get(VERSION_LABEL, ""),
                    digest=labels.get(DIGEST_LABEL, ""),
                    deployed_at=labels.get(DEPLOYED_AT_LABEL, ""),
                    revision=labels.get(REVISION_LABEL, ""),
                    running=info.get("State") == "running",
                    never_started=info.get("State") == "created",
                    container_id=info["Id"],
                    config=labels.get(CONFIG_LABEL, ""),
                    image_id=info.get("ImageID", ""),
                    ref=labels.get(IMAGE_LABEL, ""),
                )
            )
        return releases

    def pull(
        self, ref: str, auth: RegistryAuth, say: Say, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Pull ``ref``, retrying transient registry failures."""
        _retrying("pull", ref, auth, say, sleep, lambda: self._pull_once(ref, auth, say))

    def _pull_once(self, ref: str, auth: RegistryAuth, say: Say) -> None:
        with self._transfer_errors("pull", ref):
            stream = self._api.pull(ref, stream=True, decode=True, auth_config=auth.config())
            for chunk in stream:
                if (detail := stream_error(chunk)) is not None:
                    raise _RegistryFailure(detail.strip())
                status = str(chunk.get("status", ""))
                if status.startswith(("Digest:", "Status:")):
                    say(f"pull: {status}")

    @contextmanager
    def _transfer_errors(self, verb: str, ref: str, missing: str = "") -> Iterator[None]:
        """Registry answers become _RegistryFailure (retried if transient); a dead engine does not."""
        try:
            yield
        except docker.errors.APIError as exc:
            if missing and isinstance(exc, docker.errors.ImageNotFound):
                raise EnvtasksError(missing) from None
            raise _RegistryFailure(str(exc.explanation or exc)) from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            raise EnvtasksError(
                f"{verb}ing {ref} failed: the Docker engine at {self.address} is not reachable "
                f"({_first_line(exc)})"
            ) from None

    def image_id(self, ref: str) -> str | None:
        info = self.find_image(ref)
        return None if info is None else str(info["Id"])

    def image_has_healthcheck(self, ref: str) -> bool:
        with _engine_errors(self.address, f"inspecting {ref}"):
            info = self._api.inspect_image(ref)
        test = (info.get("Config") or {}).get("Healthcheck", {}) or {}
        return bool(test.get("Test")) and test["Test"][0] != "NONE"

    def create_container(self, step: CreateContainer) -> str:
        api = self._api
        bindings: dict[str, list[tuple[str, int | None] | int | None]] = {}
        for port in step.ports:
            key = f"{port.container_port}/{port.protocol}"
            bindings.setdefault(key, []).append(
                (port.host_ip, port.host_port) if port.host_ip else port.host_port
            )
        with _engine_errors(self.address, f"creating {step.name}"):
            try:
                created = api.create_container(
                    image=step.image,
                    name=step.name,
                    environment=dict(step.environment),
                    labels=dict(step.labels),
                    ports=[
                        (p.container_port, p.protocol) if p.protocol != "tcp" else p.container_port
                        for p in step.ports
                    ],
                    host_config=api.create_host_config(
                        port_bindings=bindings,
                        restart_policy=None if step.auto_remove else {"Name": step.restart},
                        auto_remove=step.auto_remove,
                        init=True,
                    ),
                )
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise EnvtasksError(
                        f"a container named {step.name} already exists on {self.address} and is "
                        "not an envtasks release; rename or remove it"
                    ) from None
                raise
        return str(created["Id"])

    def start(self, name: str) -> None:
        with _engine_errors(self.address, f"starting {name}"):
            try:
                self._api.start(name)
            except docker.errors.APIError as exc:
                message = str(exc.explanation or exc)
                if "port is already allocated" in message or "address already in use" in message:
                    raise EnvtasksError(
                        f"starting {name} failed: a published port is already taken on "
                        f"{self.address} ({_first_line(exc)}); free it or change ENVTASKS_PORTS"
                    ) from None
                raise

    def wait(self, name: str) -> int:
        """Block until the container exits; its exit code."""
        with _engine_errors(self.address, f"waiting for {name}"):
            try:
                result = self._api.wait(name)
            except docker.errors.NotFound:
                return 0
        return int(result.get("StatusCode", 0))

    def stop(self, name: str, timeout: int = 10) -> None:
        with _engine_errors(self.address, f"stopping {name}"):
            self._api.stop(name, timeout=timeout)

    def rename(self, name: str, new_name: str) -> None:
        with _engine_errors(self.address, f"renaming {name}"):
            self._api.rename(name, new_name)

    def remove(self, name: str) -> None:
        with (
            _engine_errors(self.address, f"removing {name}"),
            suppress(docker.errors.NotFound),
        ):
            self._api.remove_container(name, force=True)

    def remove_image(self, ref: str) -> bool:
        """Remove an image no container uses; False when something still uses it."""
        with _engine_errors(self.address, f"removing image {ref}"):
            try:
                self._api.remove_image(ref)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    return False
                raise
        return True

    def published_address(
        self, container: Mapping[str, Any], container_port: int
    ) -> tuple[str, int] | None:
        """Where the engine actually published an inspected container's TCP port (host, port)."""
        ports = (container.get("NetworkSettings") or {}).get("Ports") or {}
        for binding in ports.get(f"{container_port}/tcp") or []:
            host_ip, host_port = binding.get("HostIp", ""), binding.get("HostPort", "")
            if host_port:
                wildcard = host_ip in ("", "0.0.0.0", "::")
                return (self.host if wildcard else host_ip), int(host_port)
        return None

    def container_id(self, name: str) -> str:
        return str(self.inspect_container(name)["Id"])

    def inspect_container(self, name: str) -> dict[str, Any]:
        with _engine_errors(self.address, f"inspecting {name}"):
            try:
                return dict(self._api.inspect_container(name))
            except docker.errors.NotFound:
                raise EnvtasksError(f"no container {name} on {self.address}") from None

    def find_container(self, name: str) -> dict[str, Any] | None:
        try:
            return self.inspect_container(name)
        except EnvtasksError:
            return None

    def logs(self, name: str, tail: int | str = 50) -> str:
        with _engine_errors(self.address, f"reading the logs of {name}"):
            raw = self._api.logs(name, stdout=True, stderr=True, tail=tail)
        return bytes(raw).decode(errors="replace")

    def follow_logs(self, name: str, tail: int | str, follow: bool) -> Iterator[str]:
        with _engine_errors(self.address, f"reading the logs of {name}"):
            stream = self._api.logs(
                name, stdout=True, stderr=True, tail=tail, stream=True, follow=follow
            )
            yield from _lines(stream)

    def exec_in(self, name: str, argv: Sequence[str]) -> tuple[int, str]:
        with _engine_errors(self.address, f"running a command in {name}"):
            try:
                handle = self._api.exec_create(name, list(argv), stdout=True, stderr=True)
                output = self._api.exec_start(handle["Id"])
                code = self._api.exec_inspect(handle["Id"]).get("ExitCode")
            except docker.errors.APIError as exc:
                return 126, str(exc.explanation or exc)
        return int(code if code is not None else 126), bytes(output).decode(errors="replace")

    # -- the deploy lock ----------------------------------------------------

    def create_lock(self, name: str, labels: Mapping[str, str]) -> bool:
        """Take the lock atomically: container names are unique per engine."""

        def create() -> object:
            return self._api.create_container(
                image=LOCK_IMAGE, name=name, command=["locked"], labels=dict(labels)
            )

        with _engine_errors(self.address, f"taking the lock {name}"):
            try:
                return _created_unless_taken(create)
            except docker.errors.ImageNotFound:
                # Made on first use, rather than looked up on every deploy.
                repository, _, tag = LOCK_IMAGE.partition(":")
                self._api.import_image_from_data(b"\0" * 1024, repository=repository, tag=tag)
            return _created_unless_taken(create)

    def lock_holder(self, name: str) -> dict[str, str] | None:
        info = self.find_container(name)
        if info is None:
            return None
        return dict((info.get("Config") or {}).get("Labels") or {})

    @property
    def host(self) -> str:
        """The address that the engine's published ports are reached at."""
        if self.address.startswith(("tcp://", "ssh://")):
            rest = self.address.split("://", 1)[1]
            rest = rest.rsplit("@", 1)[-1]
            return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
        return "127.0.0.1"

    # -- swarm -------------------------------------------------------------

    def require_swarm_manager(self) -> None:
        with _engine_errors(self.address, "asking whether the engine is a swarm manager"):
            info = self._api.info()
        if not (info.get("Swarm") or {}).get("ControlAvailable"):
            raise EnvtasksError(
                f"ENVTASKS_TARGET=swarm, but the engine at {self.address} is not a swarm manager; "
                "run docker swarm init there (or list a manager in ENVTASKS_DOCKER_HOST)"
            )

    def find_service(self, name: str) -> dict[str, Any] | None:
        with _engine_errors(self.address, f"inspecting the service {name}"):
            try:
                return dict(self._api.inspect_service(name))
            except docker.errors.NotFound:
                return None

    def put_service(self, spec: ServiceSpec) -> None:
        """Create the service, or update it to ``spec`` (one task at a time, rolling back on failure).

        After ``login``, docker-py sends the registry credentials along, as --with-registry-auth.
        """
        types = docker.types
        test = healthcheck_test(spec.health, spec.ports)
        healthcheck = None
        if test is not None:
            healthcheck = types.Healthcheck(
                test=test,
                interval=HEALTH_INTERVAL_SECONDS * 10**9,
                timeout=HEALTH_PROBE_TIMEOUT_SECONDS * 10**9,
                retries=HEALTH_RETRIES,
                start_period=int(spec.health_timeout * 10**9),
            )
        secrets = [
            types.SecretReference(
                self._secret_id(name), name, filename=key, uid="0", gid="0", mode=0o444
            )
            for key, name in spec.secrets
        ]
        container = types.ContainerSpec(
            image=spec.image,
            env=[f"{k}={v}" for k, v in spec.env],
            labels=dict(spec.container_labels),
            healthcheck=healthcheck,
            secrets=secrets,
            init=True,
        )
        template = types.TaskTemplate(
            container_spec=container,
            restart_policy=types.RestartPolicy(condition="any", delay=10**9),
        )
        update = types.UpdateConfig(
            parallelism=1,
            delay=0,
            failure_action="rollback",
            monitor=int(spec.monitor_seconds * 10**9),
            max_failure_ratio=0,
            order=spec.order,
        )
        rollback = types.RollbackConfig(
            parallelism=1,
            delay=0,
            failure_action="pause",
            monitor=int(spec.monitor_seconds * 10**9),
            max_failure_ratio=0,
            order=spec.order,
        )
        ports = [
            {"Protocol": p.protocol, "TargetPort": p.container_port, "PublishMode": "host"}
            | ({"PublishedPort": p.host_port} if p.host_port is not None else {})
            for p in spec.ports
        ]
        arguments = {
            "task_template": template,
            "name": spec.name,
            "labels": dict(spec.labels),
            "mode": types.ServiceMode("replicated", replicas=spec.replicas),
            "update_config": update,
            "rollback_config": rollback,
            "endpoint_spec": types.EndpointSpec(mode="vip", ports=ports),
        }
        current = self.find_service(spec.name)
        with _engine_errors(self.address, f"deploying the service {spec.name}"):
            if current is None:
                self._api.create_service(**arguments)
            else:
                self._api.update_service(
                    spec.name, version=current["Version"]["Index"], **arguments
                )

    def set_service_labels(self, name: str, labels: Mapping[str, str]) -> None:
        """Change only the service's labels: no task restarts."""
        service = self.find_service(name)
        if service is None:
            return
        spec = service["Spec"]
        merged = {**(spec.get("Labels") or {}), **labels}
        with _engine_errors(self.address, f"labelling the service {name}"):
            self._api.update_service(
                name,
                version=service["Version"]["Index"],
                task_template=spec["TaskTemplate"],
                name=spec["Name"],
                labels=merged,
                mode=spec.get("Mode"),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )

    def scale_service(self, name: str, replicas: int) -> None:
        service = self.find_service(name)
        if service is None:
            return
        spec = service["Spec"]
        with _engine_errors(self.address, f"scaling the service {name}"):
            self._api.update_service(
                name,
                version=service["Version"]["Index"],
                task_template=spec["TaskTemplate"],
                name=spec["Name"],
                labels=spec.get("Labels"),
                mode={"Replicated": {"Replicas": replicas}},
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )

    def service_tasks(self, name: str) -> list[dict[str, Any]]:
        with _engine_errors(self.address, f"listing the tasks of {name}"):
            return list(self._api.tasks(filters={"service": name}))

    def service_logs(self, name: str, tail: int | str, follow: bool = False) -> Iterator[str]:
        with _engine_errors(self.address, f"reading the logs of {name}"):
            stream = self._api.service_logs(
                name, stdout=True, stderr=True, tail=tail, follow=follow, timestamps=False
            )
            yield from _lines(iter([stream]) if isinstance(stream, bytes) else stream)

    def _secret_id(self, name: str) -> str:
        with _engine_errors(self.address, f"looking up the secret {name}"):
            found = self._api.secrets(filters={"name": name})
        exact = [s for s in found if s["Spec"]["Name"] == name]
        if not exact:
            raise EnvtasksError(f"the swarm secret {name} does not exist")
        return str(exact[0]["ID"])

    def ensure_secret(self, name: str, value: str, labels: Mapping[str, str]) -> bool:
        """Create the secret unless it exists (names carry a hash of the value); True if created."""
        with _engine_errors(self.address, f"creating the secret {name}"):
            return _created_unless_taken(
                lambda: self._api.create_secret(name, value.encode(), labels=dict(labels))
            )

    def list_secrets(self, labels: Mapping[str, str]) -> list[str]:
        with _engine_errors(self.address, "listing secrets"):
            found = self._api.secrets(filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        return sorted(str(s["Spec"]["Name"]) for s in found)

    def remove_secret(self, name: str) -> bool:
        with _engine_errors(self.address, f"removing the secret {name}"):
            try:
                self._api.remove_secret(self._secret_id(name))
            except docker.errors.APIError:
                return False  # still in use by a task that is shutting down
        return True

    def create_config_lock(self, name: str, labels: Mapping[str, str]) -> bool:
        """A cluster-wide lock: swarm config names are unique across all managers."""
        with _engine_errors(self.address, f"taking the lock {name}"):
            return _created_unless_taken(
                lambda: self._api.create_config(name, b"envtasks lock", labels=dict(labels))
            )

    def config_lock_holder(self, name: str) -> dict[str, str] | None:
        with _engine_errors(self.address, f"reading the lock {name}"):
            found = self._api.configs(filters={"name": name})
        exact = [c for c in found if c["Spec"]["Name"] == name]
        return dict(exact[0]["Spec"].get("Labels") or {}) if exact else None

    def remove_config_lock(self, name: str) -> None:
        with _engine_errors(self.address, f"releasing the lock {name}"):
            found = self._api.configs(filters={"name": name})
            for config in found:
                if config["Spec"]["Name"] == name:
                    with suppress(docker.errors.NotFound):
                        self._api.remove_config(config["ID"])


def _created_unless_taken(create: Callable[[], object]) -> bool:
    """Create something whose name is unique on the engine; False when the name is taken."""
    try:
        create()
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            return False
        raise
    return True


def stream_error(chunk: Mapping[str, Any]) -> str | None:
    """The error a build, push or pull stream reports in a chunk (docker-py raises nothing)."""
    if "error" not in chunk and "errorDetail" not in chunk:
        return None
    return str((chunk.get("errorDetail") or {}).get("message") or chunk.get("error"))


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines out of a log stream whose chunks may split them anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def _retrying(
    verb: str,
    ref: str,
    auth: RegistryAuth,
    say: Say,
    sleep: Callable[[float], None],
    attempt_once: Callable[[], Any],
) -> Any:
    """Run a registry transfer, retrying transient failures with backoff."""
    for attempt in range(1, REGISTRY_ATTEMPTS + 1):
        try:
            return attempt_once()
        except _RegistryFailure as failure:
            if not failure.transient or attempt == REGISTRY_ATTEMPTS:
                after = f" after {attempt} attempts" if attempt > 1 else ""
                raise EnvtasksError(
                    f"{verb}ing {ref} failed{after}: {failure.message}; "
                    f"{_registry_hint(failure.message, auth.registry)}"
                ) from None
            delay = 0.5 * 2 ** (attempt - 1)
            say(
                f"{verb}: {failure.message} (transient; retrying in {delay:g}s, "
                f"attempt {attempt + 1}/{REGISTRY_ATTEMPTS})"
            )
            sleep(delay)
    raise AssertionError("unreachable")


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


class _RegistryFailure(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.transient = is_transient(message)


def _without_echo(message: str) -> str:
    """Registries often repeat themselves ("manifest unknown: manifest unknown"): say it once."""
    head, separator, tail = message.partition(": ")
    return head if separator and head.strip().lower() == tail.strip().lower() else message


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

"""The health gate: is a just-started release serving, within its timeout?"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .errors import EnvtasksError
from .release import WaitHealthy

PROBE_INTERVAL_SECONDS = 0.05
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")


class HealthFailure(EnvtasksError):
    """A release did not become healthy; ``last`` is the probe's last answer."""

    def __init__(self, name: str, reason: str, last: str) -> None:
        super().__init__(f"{name} {reason}; last probe: {last}")
        self.reason = reason
        self.last = last


@dataclass(frozen=True)
class Probe:
    engine: Engine
    step: WaitHealthy

    def url(self, container: Mapping[str, Any]) -> str:
        port = self.step.port
        assert port is not None
        # The engine knows where it really published the port (any free one, its default IP).
        found = self.engine.published_address(container, port.container_port)
        if found is None:
            host = port.host_ip if port.host_ip not in _WILDCARD_ADDRESSES else self.engine.host
            found = (host, port.host_port or 0)
        host, number = found
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{number}{self.step.health.path}"

    def http(self, container: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        url = self.url(container)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                body = reply.read(200).decode(errors="replace").strip()
                return 200 <= reply.status < 300, f"GET {url}: HTTP {reply.status} {body[:120]!r}"
        except urllib.error.HTTPError as exc:
            body = exc.read(200).decode(errors="replace").strip()
            return False, f"GET {url}: HTTP {exc.code} {body[:120]!r}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"GET {url}: {reason}"

    def command(self) -> tuple[bool, str]:
        code, output = self.engine.exec_in(self.step.name, self.step.health.command)
        text = " ".join(output.split())[:160]
        return code == 0, f"{' '.join(self.step.health.command)}: exit {code} {text!r}"


def wait_healthy(
    engine: Engine,
    step: WaitHealthy,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait until ``step.name`` is healthy and return the probe's answer, or raise HealthFailure."""
    probe = Probe(engine, step)
    started = clock()
    deadline = started + step.timeout
    first = engine.inspect_container(step.name)
    restarts = int(first.get("RestartCount", 0))
    own_check = not step.health.path and not step.health.command
    image_check = own_check and engine.image_has_healthcheck(str(first.get("Image", "")))
    last = "no answer yet"
    state = first
    while True:
        now = clock()
        status = state.get("State", {})
        if (
            status.get("Status") in ("exited", "dead")
            or int(state.get("RestartCount", 0)) > restarts
        ):
            raise HealthFailure(
                step.name, f"exited with code {status.get('ExitCode')} while starting", last
            )
        if step.health.path:
            ok, last = probe.http(state, timeout=max(0.2, min(2.0, deadline - now)))
        elif step.health.command:
            ok, last = probe.command()
        elif image_check:
            health = status.get("Health") or {}
            verdict = health.get("Status", "starting")
            logs = health.get("Log") or []
            output = " ".join(str(logs[-1].get("Output", "")).split())[:160] if logs else ""
            last = f"Docker HEALTHCHECK: {verdict} {output!r}"
            if verdict == "unhealthy":
                raise HealthFailure(step.name, "reported unhealthy by its HEALTHCHECK", last)
            ok = verdict == "healthy"
        else:
            ran = now - started
            last = f"running for {ran:.1f}s of {step.grace:g}s"
            ok = ran >= step.grace
        if ok:
            return last
        if now >= deadline:
            raise HealthFailure(step.name, f"did not become healthy within {step.timeout:g}s", last)
        sleep(min(PROBE_INTERVAL_SECONDS, max(0.0, deadline - clock())))
        state = engine.inspect_container(step.name)


def probe_once(engine: Engine, step: WaitHealthy) -> tuple[bool, str]:
    """One quick look, for status and the no-op redeploy."""
    info = engine.find_container(step.name)
    if info is None or not info.get("State", {}).get("Running"):
        return False, "not running"
    probe = Probe(engine, step)
    if step.health.path:
        return probe.http(info, timeout=2.0)
    if step.health.command:
        return probe.command()
    health = info["State"].get("Health")
    if health:
        return health.get("Status") == "healthy", f"Docker HEALTHCHECK: {health.get('Status')}"
    return True, "running"

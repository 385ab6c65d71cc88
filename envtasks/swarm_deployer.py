"""Carries out Swarm deploys and rollbacks: the swarm schedules, envtasks gates and records."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .config import Settings
from .deployer import Say, break_lock, hold_lock, swarm_locks
from .engine import Engine
from .errors import EnvtasksError
from .release import DEPLOYED_AT_LABEL, FAILED
from .swarm import (
    HISTORY_LABEL,
    SecretToEnsure,
    ServiceSpec,
    SwarmRelease,
    history_from_labels,
    history_label,
    plan_service,
    render_service,
    service_name,
    trimmed,
    with_current,
    with_failed,
)

POLL_SECONDS = 0.5
LOG_LINES_ON_FAILURE = 50
_ROLLED_BACK = ("rollback_started", "rollback_paused", "rollback_completed", "paused")


class SwarmDeployer:
    """One app+env as one Swarm service, reached through a manager."""

    def __init__(self, engine: Engine, settings: Settings, say: Say, task: str) -> None:
        assert settings.env is not None
        self.engine = engine
        self.settings = settings
        self.say = say
        self.task = task
        self.app = settings.deploy.name
        self.env = settings.env
        self.service = service_name(self.app, self.env)

    @contextmanager
    def locked(self, wait_seconds: float) -> Iterator[None]:
        with hold_lock(
            swarm_locks(self.engine), self.app, self.env, self.task, wait_seconds, self.say
        ):
            yield

    def unlock(self) -> str | None:
        return break_lock(swarm_locks(self.engine), self.app, self.env)

    def history(self) -> list[SwarmRelease]:
        service = self.engine.find_service(self.service)
        if service is None:
            return []
        return history_from_labels(service["Spec"].get("Labels") or {})

    def dry_lines(self, entry: SwarmRelease, secrets: Sequence[SecretToEnsure]) -> list[str]:
        kept, _ = trimmed(with_current(self.history(), entry), self.settings.deploy.keep)
        spec = plan_service(self.settings, entry, kept)
        exists = self.engine.find_service(self.service) is not None
        return render_service(spec, exists, secrets, self.settings.masker)

    def switch(self, entry: SwarmRelease, secrets: Sequence[SecretToEnsure]) -> str:
        """Make ``entry`` the running spec, health-gated; on failure record it and raise."""
        before = self.history()
        labels = {"envtasks.app": self.app, "envtasks.env": self.env}
        for secret in secrets:
            if self.engine.ensure_secret(
                secret.name, secret.value, {**labels, "envtasks.key": secret.key}
            ):
                self.say(f"created the swarm secret {secret.name}")
        kept, dropped = trimmed(with_current(before, entry), self.settings.deploy.keep)
        spec = plan_service(self.settings, entry, kept)
        existed = self.engine.find_service(self.service) is not None
        for line in render_service(spec, existed, (), self.settings.masker):
            self.say(f"$ {line}")
        started = time.monotonic()
        self.engine.put_service(spec)
        failure = self._wait(spec, existed, entry.deployed_at)
        if failure is None:
            self._prune_secrets(kept, dropped)
            return f"{spec.replicas} of {spec.replicas} tasks running healthy"
        self._record_failure(before, entry, existed)
        self._show_logs()
        back = "the previous spec runs again" if existed else "the service is scaled to 0"
        raise EnvtasksError(
            f"{self.task} of {entry.version} to {self.env} failed after "
            f"{time.monotonic() - started:.0f}s: {failure}; {back}; logs are above"
        )

    def _wait(self, spec: ServiceSpec, existed: bool, deployed_at: str) -> str | None:
        """None once every replica of the new spec runs healthy; else what went wrong."""
        limit = spec.monitor_seconds + spec.health_timeout * spec.replicas + 60
        deadline = time.monotonic() + limit
        grace_until: float | None = None
        while True:
            service = self.engine.find_service(self.service)
            if service is None:
                return "the service disappeared"
            update = service.get("UpdateStatus") or {}
            state = update.get("State")
            tasks = self.engine.service_tasks(self.service)
            mine = [t for t in tasks if _deployed_at(t) == deployed_at]
            if existed and state in _ROLLED_BACK:
                self._wait_for_rollback(deadline)
                return f"Swarm rolled the update back ({update.get('Message', state)}); {_task_errors(mine)}"
            running = [
                t
                for t in mine
                if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
            ]
            settled = state in (None, "completed")
            if len(running) >= spec.replicas and settled:
                if (
                    spec.health.path
                    or spec.health.command
                    or self.settings.deploy.health_grace <= 0
                ):
                    return None
                # No health check: the tasks must stay running for the grace period.
                grace_until = grace_until or time.monotonic() + self.settings.deploy.health_grace
                if time.monotonic() >= grace_until:
                    return None
            else:
                grace_until = None
            if time.monotonic() >= deadline:
                if not existed:
                    self.engine.scale_service(self.service, 0)
                return (
                    f"{len(running)} of {spec.replicas} tasks healthy within {limit:.0f}s; "
                    f"{_task_errors(mine)}"
                )
            time.sleep(POLL_SECONDS)

    def _wait_for_rollback(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            service = self.engine.find_service(self.service) or {}
            if (service.get("UpdateStatus") or {}).get("State") in ("rollback_completed", "paused"):
                return
            time.sleep(POLL_SECONDS)

    def _record_failure(
        self, before: list[SwarmRelease], entry: SwarmRelease, existed: bool
    ) -> None:
        history = with_failed(before, replace(entry, status=FAILED))
        kept, _ = trimmed(history, self.settings.deploy.keep)
        self.engine.set_service_labels(self.service, {HISTORY_LABEL: history_label(kept)})
        if not existed:
            self.engine.scale_service(self.service, 0)

    def _show_logs(self) -> None:
        lines = list(self.engine.service_logs(self.service, tail=LOG_LINES_ON_FAILURE))
        self.say(f"last {LOG_LINES_ON_FAILURE} log lines of {self.service}:")
        for line in lines or ["(it wrote nothing)"]:
            self.say(f"  | {line}")

    def _prune_secrets(self, kept: list[SwarmRelease], dropped: list[SwarmRelease]) -> None:
        """Remove this app+env's secrets that no kept release uses any more."""
        used = {name for entry in kept for _, name in entry.secrets}
        labels = {"envtasks.app": self.app, "envtasks.env": self.env}
        for name in self.engine.list_secrets(labels):
            if name not in used and self.engine.remove_secret(name):
                self.say(f"removed the swarm secret {name}")
        for entry in dropped:
            self.say(f"pruned the release {entry.version} from the history")


def _deployed_at(task: dict[str, Any]) -> str:
    labels = task.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {}
    return str(labels.get(DEPLOYED_AT_LABEL, ""))


def _task_errors(tasks: list[dict[str, Any]]) -> str:
    errors = []
    for task in tasks:
        status = task.get("Status", {})
        if status.get("State") in ("failed", "rejected", "shutdown") and (
            status.get("Err") or status.get("Message")
        ):
            errors.append(
                f"task {task['ID'][:12]} {status.get('State')}: {status.get('Err') or status.get('Message')}"
            )
    unique = list(dict.fromkeys(errors))
    return "tasks: " + "; ".join(unique[:3]) if unique else "no task reported an error"

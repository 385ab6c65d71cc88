"""Carries out switch plans on one engine, under the deploy lock, undoing a failed switch."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from .engine import Engine
from .errors import EnvtasksError
from .health import HealthFailure, wait_healthy
from .masking import Masker
from .release import (
    CreateContainer,
    DeployStep,
    MarkFailed,
    Release,
    RemoveContainer,
    RenameContainer,
    StartContainer,
    StopContainer,
    SwitchPlan,
    WaitHealthy,
    current_release,
    deploy_cli_lines,
    failed_name,
    lock_name,
    releases_to_prune,
)

Say = Callable[[str], None]
LOCK_POLL_SECONDS = 0.5
LOG_LINES_ON_FAILURE = 50
LOCK_LABELS = ("user", "host", "pid", "task", "since")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe_holder(labels: dict[str, str]) -> str:
    get = {key: labels.get(f"envtasks.lock.{key}", "?") for key in LOCK_LABELS}
    return f"{get['user']}@{get['host']} pid {get['pid']} ({get['task']}) since {get['since']}"


def _holder_is_gone(labels: dict[str, str]) -> bool:
    """True when the holder ran on this machine and its process no longer exists."""
    if labels.get("envtasks.lock.host") != socket.gethostname():
        return False
    try:
        pid = int(labels.get("envtasks.lock.pid", ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class LockStore:
    """Where a target keeps its lock: an atomic create, a read of the holder, a removal."""

    take: Callable[[str, dict[str, str]], bool]
    holder: Callable[[str], dict[str, str] | None]
    drop: Callable[[str], None]


def container_locks(engine: Engine) -> LockStore:
    """A never-started container: container names are unique per engine."""
    return LockStore(engine.create_lock, engine.lock_holder, engine.remove)


def swarm_locks(engine: Engine) -> LockStore:
    """A swarm config: config names are unique across the whole cluster."""
    return LockStore(
        engine.create_config_lock, engine.config_lock_holder, engine.remove_config_lock
    )


@contextmanager
def hold_lock(
    store: LockStore, app: str, env: str, task: str, wait_seconds: float, say: Say
) -> Iterator[None]:
    """Hold the app+env lock; released on every exit path, errors, Ctrl-C and SIGTERM included."""
    name = lock_name(app, env)
    labels = {
        "envtasks.lock.user": _user(),
        "envtasks.lock.host": socket.gethostname(),
        "envtasks.lock.pid": str(os.getpid()),
        "envtasks.lock.task": task,
        "envtasks.lock.since": utc_now(),
        "envtasks.app": app,
        "envtasks.env": env,
    }
    with _sigterm_as_interrupt():
        deadline = time.monotonic() + max(0.0, wait_seconds)
        announced = False
        while not store.take(name, labels):
            holder = store.holder(name)
            if holder is None:
                continue  # released between our two calls: try again
            if _holder_is_gone(holder):
                say(f"taking over the stale lock of {describe_holder(holder)}")
                store.drop(name)
                continue
            if time.monotonic() >= deadline:
                raise EnvtasksError(
                    f"{app}-{env} is locked by {describe_holder(holder)}; "
                    f"wait with --lock-wait=SECONDS, or if that deploy is dead: "
                    f"invoke unlock --env={env}"
                )
            if not announced:
                say(f"waiting for the lock held by {describe_holder(holder)}")
                announced = True
            time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            store.drop(name)


def break_lock(store: LockStore, app: str, env: str) -> str | None:
    """Remove the lock whoever holds it; who that was, or None when there was none."""
    name = lock_name(app, env)
    holder = store.holder(name)
    if holder is None:
        return None
    store.drop(name)
    return describe_holder(holder)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """So that a CI runner's SIGTERM releases the lock like Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Deployer:
    """One app+env on one engine."""

    def __init__(
        self, engine: Engine, app: str, env: str, say: Say, masker: Masker, task: str
    ) -> None:
        self.engine = engine
        self.app = app
        self.env = env
        self.say = say
        self.masker = masker
        self.task = task

    def releases(self) -> list[Release]:
        return self.engine.list_releases(self.app, self.env)

    @contextmanager
    def locked(self, wait_seconds: float) -> Iterator[None]:
        """Hold the app+env lock on the engine; released on every exit path."""
        with hold_lock(
            container_locks(self.engine), self.app, self.env, self.task, wait_seconds, self.say
        ):
            yield

    def unlock(self) -> str | None:
        return break_lock(container_locks(self.engine), self.app, self.env)

    def show(self, step: DeployStep) -> None:
        for line in deploy_cli_lines(step, self.masker):
            self.say(("" if line.startswith("#") else "$ ") + line)

    def switch(self, plan: SwitchPlan) -> str:
        """Run the plan; on failure from the switch on, undo it and raise. Returns the probe answer."""
        done_renames: list[RenameContainer] = []
        answer = ""
        for index, step in enumerate(plan.steps):
            try:
                # Inside the try: a Ctrl-C that lands while a step is shown still undoes the switch.
                self.show(step)
                answer = self._carry_out(step) or answer
            except (EnvtasksError, KeyboardInterrupt) as failure:
                if index < plan.switch_at:
                    self._undo_renames(done_renames)
                    raise
                self._undo(plan, failure)
                raise AssertionError("_undo always raises") from None
            if isinstance(step, RenameContainer):
                done_renames.append(step)
        return answer

    def _carry_out(self, step: DeployStep) -> str | None:
        engine = self.engine
        match step:
            case RenameContainer():
                engine.rename(step.name, step.new_name)
            case CreateContainer():
                engine.create_container(step)
            case StopContainer():
                engine.stop(step.name)
            case StartContainer():
                engine.start(step.name)
            case WaitHealthy():
                answer = wait_healthy(engine, step)
                self.say(f"{step.name} is healthy: {answer}")
                return answer
            case MarkFailed():
                failed = failed_name(step.name, engine.container_id(step.name))
                engine.rename(step.name, failed)
                self.say(f"kept the failed release as {failed}")
            case RemoveContainer():
                engine.remove(step.name)
            case _:
                raise AssertionError(f"not a switch step: {step!r}")
        return None

    def revert(self, plan: SwitchPlan, reason: str) -> None:
        """Switch a host that succeeded back to its previous release (all or nothing)."""
        self.say(f"switching {plan.target} back: {reason}")
        for step in plan.undo:
            self.show(step)
            self._carry_out(step)

    def _undo_renames(self, renames: list[RenameContainer]) -> None:
        for step in reversed(renames):
            self.engine.rename(step.new_name, step.name)

    def _undo(self, plan: SwitchPlan, failure: BaseException) -> None:
        interrupted = isinstance(failure, KeyboardInterrupt)
        reason = "interrupted" if interrupted else str(failure)
        self.say(f"{plan.target} failed: {reason}; switching back")
        logs = ""
        if self.engine.find_container(plan.target) is not None:
            logs = self.engine.logs(plan.target, tail=LOG_LINES_ON_FAILURE)
        undo_errors = []
        for step in plan.undo:
            self.show(step)
            try:
                self._carry_out(step)
            except EnvtasksError as exc:
                undo_errors.append(exc.message)
        self.say(f"last {LOG_LINES_ON_FAILURE} log lines of {plan.target}:")
        for line in logs.rstrip("\n").splitlines() or ["(it wrote nothing)"]:
            self.say(f"  | {line}")
        if interrupted:
            raise KeyboardInterrupt
        previous = next((s.name for s in plan.undo if isinstance(s, StartContainer)), "")
        back = f"{previous} is serving again" if previous and not undo_errors else ""
        if undo_errors:
            back = "switching back failed too: " + "; ".join(undo_errors)
        detail = failure.message if isinstance(failure, EnvtasksError) else reason
        if isinstance(failure, HealthFailure):
            detail = f"{plan.target} {failure.reason}; last probe: {failure.last}"
        raise EnvtasksError(
            f"{self.task} of {plan.version} to {self.env} failed: {detail}. "
            f"{back or 'there was no previous release to go back to'}; "
            f"logs of {plan.target} are above"
        )

    def prune(self, keep: int, current: str | None = None) -> list[str]:
        """Remove this app+env's releases beyond ``keep``, and their images when unused."""
        releases = self.releases()
        if current is None:
            running = current_release(releases)
            current = running.name if running else ""
        pruned = []
        for release in releases_to_prune(releases, keep, current):
            self.show(RemoveContainer(release.name))
            self.engine.remove(release.name)
            pruned.append(release.name)
            if release.image_id:
                self.engine.remove_image(release.image_id)
        return pruned


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())

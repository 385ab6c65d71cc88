"""One app+env on several engines at once: in parallel, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from .deployer import Deployer, Say
from .engine import Engine
from .errors import EnvtasksError
from .masking import Masker
from .release import SwitchPlan

# Builds a host's plan under the lock; None when that host needs no change.
Prepare = Callable[[Deployer], SwitchPlan | None]


@dataclass
class HostOutcome:
    deployer: Deployer
    plan: SwitchPlan | None = None
    answer: str = ""
    error: BaseException | None = None

    @property
    def address(self) -> str:
        return self.deployer.engine.address


def prefixed(say: Say, address: str) -> Say:
    return lambda line: say(f"[{address}] {line}")


class Fleet:
    def __init__(
        self, engines: Sequence[Engine], app: str, env: str, say: Say, masker: Masker, task: str
    ) -> None:
        several = len(engines) > 1
        self.deployers = [
            Deployer(e, app, env, prefixed(say, e.address) if several else say, masker, task)
            for e in engines
        ]
        self.env = env
        self.task = task

    @property
    def several(self) -> bool:
        return len(self.deployers) > 1

    @contextmanager
    def locked(self, wait_seconds: float) -> Iterator[None]:
        """The lock on every engine, always taken in the same order so two fleets cannot deadlock."""
        with ExitStack() as stack:
            for deployer in sorted(self.deployers, key=lambda d: d.engine.address):
                stack.enter_context(deployer.locked(wait_seconds))
            yield

    def switch_all(self, prepare: Prepare) -> list[HostOutcome]:
        """Prepare and switch every host; if any fails, switch back those that switched."""
        outcomes = [HostOutcome(d) for d in self.deployers]
        if not self.several:
            # One engine: run here, so Ctrl-C reaches the switch and its undo directly.
            self._switch_one(outcomes[0], prepare)
            if outcomes[0].error is not None:
                raise outcomes[0].error
            return outcomes
        interrupted = False
        with ThreadPoolExecutor(max_workers=len(outcomes)) as pool:
            futures = [pool.submit(self._switch_one, o, prepare) for o in outcomes]
            for future in futures:
                while True:
                    try:
                        future.result()
                        break
                    except KeyboardInterrupt:
                        interrupted = True  # let the hosts finish, then switch all back
        failed = [o for o in outcomes if o.error is not None]
        if not failed and not interrupted:
            return outcomes
        for outcome in outcomes:
            if outcome.error is None and outcome.plan is not None:
                outcome.deployer.revert(
                    outcome.plan, "another host failed" if failed else "interrupted"
                )
        if interrupted:
            raise KeyboardInterrupt
        names = ", ".join(o.address for o in failed)
        first = failed[0].error
        detail = first.message if isinstance(first, EnvtasksError) else repr(first)
        switched_back = [o.address for o in outcomes if o.error is None and o.plan is not None]
        back = f"; switched back {', '.join(switched_back)}" if switched_back else ""
        raise EnvtasksError(
            f"{self.task} to {self.env} failed on {names}: {detail}{back}; nothing changed overall"
        )

    @staticmethod
    def _switch_one(outcome: HostOutcome, prepare: Prepare) -> None:
        try:
            outcome.plan = prepare(outcome.deployer)
            if outcome.plan is not None:
                outcome.answer = outcome.deployer.switch(outcome.plan)
        except (EnvtasksError, KeyboardInterrupt) as exc:
            outcome.error = exc

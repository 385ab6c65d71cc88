"""The thin layer between ``@task`` wrappers and the rest: settings, output, dry runs, errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from invoke import Context, Exit, task

from .config import Settings, load_settings
from .engine import Engine, RegistryAuth
from .errors import EnvtasksError
from .plan import BuildImage, Login, PushImage, Step, TagImage, render
from .version import resolve_version

F = TypeVar("F", bound=Callable[..., Any])


def envtask(*, help: dict[str, str] | None = None) -> Callable[[F], Any]:
    """``@task`` whose user-caused errors end the run with one line on stderr, not a traceback."""

    def decorate(body: F) -> Any:
        @functools.wraps(body)
        def guarded(c: Context, *args: Any, **kwargs: Any) -> Any:
            try:
                return body(c, *args, **kwargs)
            except EnvtasksError as exc:
                raise Exit(f"envtasks: {exc.message}", code=exc.code) from None
            except KeyboardInterrupt:
                raise Exit("envtasks: interrupted", code=130) from None

        # auto_shortflags=False: a short -e for --env would clash with core --echo.
        return task(auto_shortflags=False, help=help or {})(guarded)

    return decorate


def project_root(c: Context) -> Path:
    configured = c.config.get("envtasks", {}).get("root")
    if configured:
        return Path(configured)
    # Invoke records the folder of the loaded tasks.py as the project location.
    prefix = getattr(c.config, "_project_prefix", None)
    return Path(prefix) if prefix else Path.cwd()


def is_dry(c: Context) -> bool:
    return bool(c.config.run.dry)


@dataclass
class Run:
    """One task's view of its environment: settings, output and (lazily) the engine."""

    c: Context
    settings: Settings
    dry: bool
    _engines: list[Engine] = field(default_factory=list, repr=False)

    @property
    def root(self) -> Path:
        return self.settings.root

    def say(self, text: str) -> None:
        print(self.settings.mask(text), flush=True)

    def engine(self) -> Engine:
        if self.dry:
            raise AssertionError("a dry run must not change the engine: use reader()")
        return self.reader()

    def reader(self) -> Engine:
        """The (first) engine, for reads only in a dry run (deploy plans depend on what runs)."""
        return self.engines()[0]

    def engines(self) -> list[Engine]:
        """Every engine of the env, all reached before anything changes on any of them."""
        if not self._engines:
            hosts = self.settings.deploy.docker_hosts or (None,)
            connected: list[Engine] = []
            try:
                for host in hosts:
                    connected.append(Engine.connect(host))
            except EnvtasksError as exc:
                for engine in connected:
                    engine.close()
                suffix = "; nothing was changed on any engine" if len(hosts) > 1 else ""
                raise EnvtasksError(exc.message + suffix) from None
            self._engines = connected
        return self._engines

    def version(self, explicit: str | None) -> str:
        """The version of this run; a later task in the same run reuses an earlier task's."""
        shared = self.c.config.envtasks
        remembered = shared.get("run_version")
        if explicit or not remembered:
            version = resolve_version(explicit, self.settings.process_version, self.root)
            shared.run_version = version
            return version
        return str(remembered)

    def registry_auth(self) -> RegistryAuth:
        return RegistryAuth(
            self.settings.registry,
            self.settings.registry_username,
            self.settings.registry_password,
        )

    def show(self, step: Step) -> None:
        self.say(("" if self.dry else "$ ") + render(step, self.root, self.settings.masker))

    def execute(self, steps: Sequence[Step]) -> None:
        """Print each step as its docker CLI line; unless dry, carry it out."""
        pushed: list[str] = []
        for step in steps:
            self.show(step)
            if self.dry:
                continue
            try:
                result = self._carry_out(step)
            except EnvtasksError as exc:
                if pushed:
                    raise EnvtasksError(
                        f"{exc.message} (already pushed: {', '.join(pushed)})"
                    ) from None
                raise
            if isinstance(step, PushImage):
                pushed.append(f"{step.ref}@{result}")
                # The bare reference on its own line, for scripts to capture.
                self.say(f"{step.ref}@{result}")

    def _carry_out(self, step: Step) -> str | None:
        engine = self.engine()
        match step:
            case BuildImage():
                if not step.dockerfile.is_file():
                    raise EnvtasksError(
                        f"no Dockerfile at {step.dockerfile}; set ENVTASKS_DOCKERFILE in envs/base.env"
                    )
                engine.build(step, self.say)
                self.say(f"built {step.ref}")
            case TagImage():
                engine.tag(step.source, step.target)
            case Login():
                engine.login(self.registry_auth())
            case PushImage():
                engine.require_image(step.ref, "build it first with `invoke build`")
                return engine.push(step.ref, self.registry_auth(), self.say)
        return None

    def close(self) -> None:
        for engine in self._engines:
            engine.close()


@contextmanager
def open_run(c: Context, env: str | None) -> Iterator[Run]:
    """Settings for ``env`` (``base.env`` alone when None); errors come out with secrets masked."""
    settings = load_settings(project_root(c), env, os.environ)
    run = Run(c, settings, is_dry(c))
    try:
        yield run
    except EnvtasksError as exc:
        raise EnvtasksError(settings.mask(exc.message), exc.code) from None
    finally:
        run.close()

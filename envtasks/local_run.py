"""The ``run`` task: an env's image, variables and ports on this machine, for trying things out."""

from __future__ import annotations

from invoke import Collection, Context

from .errors import EnvtasksError
from .release import (
    CreateContainer,
    DeployStep,
    PullImage,
    StartContainer,
    deploy_cli_lines,
    release_environment,
)
from .runner import envtask, open_run

RUN_LABEL = "envtasks.run"


@envtask(
    help={
        "env": "the environment whose variables and ports to use, e.g. --env=dev",
        "version": "version to run (default: ENVTASKS_VERSION, else the git commit)",
        "detach": "start it in the background and return",
    }
)
def run(c: Context, env: str = "", version: str = "", detach: bool = False) -> None:
    """Run <image>:<version> here with an env's variables and ports (Ctrl-C stops it)."""
    if not env:
        raise EnvtasksError("run needs --env=E, e.g. --env=dev")
    with open_run(c, env) as session:
        settings = session.settings
        tag = session.version(version or None)
        ref = f"{settings.image}:{tag}"
        name = f"{settings.deploy.name}-{env}-run"
        create = CreateContainer(
            name,
            ref,
            tuple(sorted(release_environment(settings, tag).items())),
            ((RUN_LABEL, f"{settings.deploy.name}-{env}"),),
            settings.deploy.ports,
            auto_remove=not detach,
        )
        steps: list[DeployStep] = [create, StartContainer(name)]
        if session.dry:
            for step in (PullImage(ref), *steps):
                session.say(deploy_cli_lines(step, settings.masker)[0])
            return
        engine = session.engine()
        if engine.image_id(ref) is None:
            session.say(deploy_cli_lines(PullImage(ref), settings.masker)[0])
            engine.pull(ref, session.registry_auth(), session.say)
        existing = engine.find_container(name)
        if existing is not None:
            if existing.get("State", {}).get("Running"):
                raise EnvtasksError(f"{name} is already running; stop it with: docker rm -f {name}")
            engine.remove(name)
        engine.create_container(create)
        try:
            engine.start(name)
        except EnvtasksError:
            engine.remove(name)
            raise
        ports = ", ".join(str(p) for p in settings.deploy.ports) or "no published ports"
        if detach:
            session.say(f"started {name} ({ref}; {ports}); stop it with: docker rm -f {name}")
            return
        session.say(f"running {name} ({ref}; {ports}); Ctrl-C stops it")
        try:
            for line in engine.follow_logs(name, tail="all", follow=True):
                session.say(line)
        except KeyboardInterrupt:
            engine.stop(name)
        code = engine.wait(name)
        if code != 0:
            raise EnvtasksError(f"{name} exited with code {code}", code=code)


ns = Collection("local", run)

"""What deploy, rollback, releases, status and logs do when ENVTASKS_TARGET=swarm."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from .deployer import utc_now
from .errors import EnvtasksError
from .plan import image_revision
from .release import CURRENT, AcquireLock, ReleaseLock, config_fingerprint, deploy_cli_lines
from .runner import Run
from .swarm import (
    SwarmRelease,
    current_entry,
    split_environment,
    swarm_rollback_target,
)
from .swarm_deployer import SwarmDeployer


def swarm_deployer(run: Run, task: str) -> SwarmDeployer:
    engine = run.reader()
    engine.require_swarm_manager()
    return SwarmDeployer(engine, run.settings, run.say, task)


def _healthy_now(deployer: SwarmDeployer, entry: SwarmRelease) -> bool:
    tasks = deployer.engine.service_tasks(deployer.service)
    running = [
        t
        for t in tasks
        if t["Status"]["State"] == "running"
        and t["DesiredState"] == "running"
        and (t["Spec"]["ContainerSpec"].get("Labels") or {}).get("envtasks.deployed-at")
        == entry.deployed_at
    ]
    return len(running) >= deployer.settings.deploy.replicas


def _locked_lines(run: Run, body: list[str]) -> list[str]:
    app, env = run.settings.deploy.name, run.settings.env
    assert env is not None
    masker = run.settings.masker
    return [
        *deploy_cli_lines(AcquireLock(app, env, swarm=True), masker),
        *body,
        *deploy_cli_lines(ReleaseLock(app, env, swarm=True), masker),
    ]


def deploy_to_swarm(
    run: Run, version: str, image: str, digest: str, lock_wait: float, task: str
) -> None:
    settings = run.settings
    assert settings.env is not None
    deployer = swarm_deployer(run, task)
    plain, secrets = split_environment(settings, version)
    if settings.deploy.secrets_as_env and any(e.secret for e in settings.app):
        print(
            "envtasks: warning: ENVTASKS_SECRETS_AS_ENV=true puts secret values in the service "
            "spec, where docker service inspect shows them",
            file=sys.stderr,
        )
    fingerprint = config_fingerprint(
        {**plain, **{f"{s.key}_SECRET": s.name for s in secrets}},
        settings.deploy.ports,
        image,
        settings.deploy.health,
    )
    engine = deployer.engine
    if run.dry:
        revision = "<from the image>"
    else:
        found = engine.find_image(image)
        if image != digest and found is None:
            engine.pull(image, run.registry_auth(), run.say)
            found = engine.find_image(image)
        revision = image_revision(found)
    entry = SwarmRelease(
        version=version,
        ref=image,
        digest=digest,
        deployed_at=utc_now(),
        revision=revision,
        status=CURRENT,
        env=tuple(sorted(plain.items())),
        secrets=tuple((s.key, s.name) for s in secrets),
        config=f"{fingerprint}/{settings.deploy.replicas}",
    )
    if run.dry:
        for line in _locked_lines(run, deployer.dry_lines(entry, secrets)):
            run.say(line)
        return
    started = time.monotonic()
    with deployer.locked(lock_wait):
        current = current_entry(deployer.history())
        if (
            current is not None
            and current.digest == digest
            and current.config == entry.config
            and _healthy_now(deployer, current)
        ):
            run.say(f"{version} is already current and healthy in {settings.env}; nothing to do")
            return
        if settings.registry_username:
            engine.login(run.registry_auth())
        answer = deployer.switch(entry, secrets)
    run.say(
        f"{settings.env} now runs {version} as the service {deployer.service} ({image}), "
        f"in {time.monotonic() - started:.1f}s: {answer}"
    )


def rollback_swarm(run: Run, version: str | None, lock_wait: float) -> None:
    deployer = swarm_deployer(run, "rollback")
    if run.dry:
        target = swarm_rollback_target(deployer.history(), version)
        for line in _locked_lines(run, deployer.dry_lines(target, ())):
            run.say(line)
        return
    started = time.monotonic()
    with deployer.locked(lock_wait):
        history = deployer.history()
        target = swarm_rollback_target(history, version)
        if target.status == CURRENT:
            run.say(f"{target.version} is already current; nothing to do")
            return
        answer = deployer.switch(replace(target, status=CURRENT), ())
    run.say(
        f"{run.settings.env} now runs {target.version} as the service {deployer.service} "
        f"({target.ref}), in {time.monotonic() - started:.1f}s: {answer}"
    )


def swarm_rows(run: Run) -> list[dict[str, str]]:
    return [entry.as_row() for entry in swarm_deployer(run, "releases").history()]


def swarm_status(run: Run) -> None:
    deployer = swarm_deployer(run, "status")
    service = deployer.engine.find_service(deployer.service)
    if service is None:
        raise EnvtasksError(f"there is no service {deployer.service} on {deployer.engine.address}")
    current = current_entry(deployer.history())
    tasks = deployer.engine.service_tasks(deployer.service)
    running = [
        t for t in tasks if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
    ]
    wanted = (service["Spec"].get("Mode", {}).get("Replicated") or {}).get("Replicas", 0)
    update = (service.get("UpdateStatus") or {}).get("State", "none")
    run.say(f"{run.settings.env} on {deployer.engine.address}: the service {deployer.service}")
    run.say(
        f"  release:  {current.version if current else '(none)'} ({current.ref if current else '-'})"
    )
    run.say(f"  tasks:    {len(running)} of {wanted} running healthy; last update: {update}")
    for task in running:
        run.say(
            f"    {task['ID'][:12]} on node {task.get('NodeID', '?')[:12]} since {task['Status'].get('Timestamp', '?')}"
        )
    if current is None or len(running) < wanted:
        raise EnvtasksError(f"{deployer.service} runs {len(running)} of {wanted} tasks")


def swarm_logs(run: Run, tail: int, follow: bool) -> None:
    deployer = swarm_deployer(run, "logs")
    for line in deployer.engine.service_logs(deployer.service, tail=tail, follow=follow):
        run.say(line)


def swarm_current_ref(run: Run) -> tuple[str, str, str] | None:
    """(version, ref, digest) of the current release, for promote."""
    current = current_entry(swarm_deployer(run, "promote").history())
    return (current.version, current.ref, current.digest) if current else None


def swarm_unlock(run: Run) -> str | None:
    return swarm_deployer(run, "unlock").unlock()

"""Tasks for the running half of the job: deploy, rollback, releases, status, logs, promote."""

from __future__ import annotations

import json
import os
import time

from invoke import Collection, Context

from .config import Settings, load_settings
from .deployer import Deployer, utc_now
from .engine import Engine, is_local_address
from .errors import EnvtasksError
from .health import probe_once
from .plan import OCI
from .release import (
    PullImage,
    ReleaseLock,
    SwitchPlan,
    WaitHealthy,
    config_fingerprint,
    current_release,
    deploy_cli_lines,
    first_tcp_port,
    newest_first,
    plan_deploy,
    plan_rollback,
    release_environment,
    release_labels,
    render_locked,
    rollback_target,
    statuses,
)
from .runner import Run, envtask, open_run, project_root

ENV_HELP = "the environment, e.g. --env=prod"
LOCK_WAIT_HELP = "seconds to wait for another deploy's lock (default 0: fail at once)"


def _require_env(env: str) -> str:
    if not env:
        raise EnvtasksError("this task needs --env=E, e.g. --env=prod")
    return env


def _deployer(run: Run, task: str) -> Deployer:
    settings = run.settings
    assert settings.env is not None
    return Deployer(
        run.engine(), settings.deploy.name, settings.env, run.say, settings.masker, task
    )


def _probe_step(settings: Settings, name: str) -> WaitHealthy:
    deploy = settings.deploy
    return WaitHealthy(
        name,
        deploy.health,
        deploy.health_timeout,
        deploy.health_grace,
        first_tcp_port(deploy.ports),
    )


def resolve_image(run: Run, version: str) -> tuple[str, str]:
    """``image@digest`` from the registry (or, on a local engine, the local image), and the digest."""
    ref = f"{run.settings.image}:{version}"
    engine = run.reader()
    try:
        digest = engine.registry_digest(ref, run.registry_auth())
    except EnvtasksError as registry_error:
        local = engine.image_id(ref) if is_local_address(engine.address) else None
        if local is None:
            raise EnvtasksError(f"cannot deploy: {registry_error.message}") from None
        run.say(
            f"{ref} is not in the registry ({registry_error.message}); using the local image {local}"
        )
        return local, local
    return f"{run.settings.image}@{digest}", digest


def _deploy_image(
    run: Run, version: str, image: str, digest: str, lock_wait: float, task: str
) -> None:
    """Switch the env to ``image`` (pinned by digest), health-gated, under the lock."""
    settings = run.settings
    assert settings.env is not None
    fingerprint = config_fingerprint(
        release_environment(settings, version), settings.deploy.ports, image, settings.deploy.health
    )
    pull = image != digest  # a bare image ID is local and cannot be pulled
    if run.dry:
        releases = run.reader().list_releases(settings.deploy.name, settings.env)
        labels = release_labels(
            settings, version, image, digest, "<from the image>", "<now>", fingerprint
        )
        plan = plan_deploy(settings, version, image, labels, releases)
        before = [PullImage(image)] if pull else []
        for line in render_locked(
            settings.deploy.name, settings.env, plan, settings.masker, before
        ):
            run.say(line)
        return
    deployer = _deployer(run, task)
    started = time.monotonic()
    with deployer.locked(lock_wait):
        releases = deployer.releases()
        current = current_release(releases)
        if current and current.digest == digest and current.config == fingerprint:
            healthy, answer = probe_once(run.engine(), _probe_step(settings, current.name))
            if healthy:
                run.say(
                    f"{version} is already current and healthy in {settings.env} ({answer}); nothing to do"
                )
                return
        if pull:
            deployer.show(PullImage(image))
            if run.engine().image_id(image) is None:
                run.engine().pull(image, run.registry_auth(), run.say)
            else:
                run.say(f"pull: {image} is already on the engine (pinned by digest)")
        revision = run.engine().image_labels(image).get(f"{OCI}.revision", "unknown")
        labels = release_labels(settings, version, image, digest, revision, utc_now(), fingerprint)
        plan = plan_deploy(settings, version, image, labels, releases)
        answer = deployer.switch(plan)
        pruned = deployer.prune(settings.deploy.keep, plan.target)
    _report(run, plan, image, answer, time.monotonic() - started, pruned)


def _report(
    run: Run, plan: SwitchPlan, image: str, answer: str, seconds: float, pruned: list[str]
) -> None:
    note = f"; pruned {', '.join(pruned)}" if pruned else ""
    run.say(
        f"{run.settings.env} now runs {plan.version} as {plan.target} ({image}), healthy in "
        f"{seconds:.1f}s: {answer}{note}"
    )


@envtask(
    help={
        "env": ENV_HELP,
        "version": "version to deploy (default: ENVTASKS_VERSION, else the git commit)",
        "lock-wait": LOCK_WAIT_HELP,
    }
)
def deploy(c: Context, env: str = "", version: str = "", lock_wait: float = 0.0) -> None:
    """Run <image>@<digest> of a version in an env, health-gated; the previous release is kept."""
    with open_run(c, _require_env(env)) as run:
        tag = run.version(version or None)
        image, digest = resolve_image(run, tag)
        _deploy_image(run, tag, image, digest, float(lock_wait), "deploy")


@envtask(
    help={
        "env": ENV_HELP,
        "version": "kept release to go back to (default: the one before the current)",
        "lock-wait": LOCK_WAIT_HELP,
    }
)
def rollback(c: Context, env: str = "", version: str = "", lock_wait: float = 0.0) -> None:
    """Go back to the release before the current one, or to a kept --version, health-gated."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        if run.dry:
            releases = run.reader().list_releases(settings.deploy.name, settings.env)
            plan = plan_rollback(settings, rollback_target(releases, version or None), releases)
            for line in render_locked(settings.deploy.name, settings.env, plan, settings.masker):
                run.say(line)
            return
        deployer = _deployer(run, "rollback")
        started = time.monotonic()
        with deployer.locked(float(lock_wait)):
            releases = deployer.releases()
            target = rollback_target(releases, version or None)
            current = current_release(releases)
            if current is not None and current.name == target.name:
                run.say(f"{target.version} is already current in {settings.env}; nothing to do")
                return
            plan = plan_rollback(settings, target, releases)
            answer = deployer.switch(plan)
        _report(run, plan, target.ref or target.digest, answer, time.monotonic() - started, [])


@envtask(help={"env": ENV_HELP, "json": "print a JSON list"})
def releases(c: Context, env: str = "", json_: bool = False) -> None:
    """The kept releases of an env, newest first, with their status."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        rows = [
            release.as_row(status)
            for release, status in statuses(
                run.reader().list_releases(settings.deploy.name, settings.env)
            )
        ]
        if json_:
            run.say(json.dumps(rows, indent=2))
            return
        if not rows:
            run.say(f"no releases of {settings.deploy.name} in {settings.env}")
            return
        columns = ("version", "status", "deployed_at", "digest", "revision")
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in columns}
        run.say("  ".join(k.upper().ljust(widths[k]) for k in columns).rstrip())
        for row in rows:
            run.say("  ".join(row[k].ljust(widths[k]) for k in columns).rstrip())


@envtask(help={"env": ENV_HELP})
def status(c: Context, env: str = "") -> None:
    """What runs in an env, since when, and whether it is healthy."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        engine = run.reader()
        releases = engine.list_releases(settings.deploy.name, settings.env)
        current = current_release(releases)
        if current is None:
            kept = ", ".join(r.version for r in newest_first(releases)) or "none"
            raise EnvtasksError(
                f"nothing of {settings.deploy.name} runs in {settings.env} on {engine.address}; "
                f"kept releases: {kept}"
            )
        info = engine.inspect_container(current.name)
        healthy, answer = probe_once(engine, _probe_step(settings, current.name))
        run.say(f"{settings.env} on {engine.address}: {current.version} ({current.name})")
        run.say(f"  image:    {current.ref or current.digest}")
        run.say(
            f"  running since {info['State'].get('StartedAt', '?')}, deployed {current.deployed_at}"
        )
        run.say(f"  health:   {'healthy' if healthy else 'UNHEALTHY'} ({answer})")
        if not healthy:
            raise EnvtasksError(f"{current.name} is not healthy: {answer}")


@envtask(
    help={
        "env": ENV_HELP,
        "follow": "keep printing new lines",
        "tail": "lines to show (default 100)",
    }
)
def logs(c: Context, env: str = "", follow: bool = False, tail: int = 100) -> None:
    """The current release's logs (the newest release's if none runs)."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        releases = run.reader().list_releases(settings.deploy.name, settings.env)
        chosen = current_release(releases) or next(iter(newest_first(releases)), None)
        if chosen is None:
            raise EnvtasksError(f"no releases of {settings.deploy.name} in {settings.env}")
        try:
            for line in run.reader().follow_logs(chosen.name, tail=int(tail), follow=follow):
                run.say(line)
        except KeyboardInterrupt:
            return


@envtask(
    help={
        "from": "env whose current release to promote",
        "to": "env to deploy it to",
        "lock-wait": LOCK_WAIT_HELP,
    }
)
def promote(c: Context, from_: str = "", to: str = "", lock_wait: float = 0.0) -> None:
    """Deploy to --to the exact digest that is current in --from, without building or pushing."""
    if not from_ or not to:
        raise EnvtasksError("promote needs --from=A --to=B, e.g. --from=test --to=prod")
    source = load_settings(project_root(c), from_, os.environ)
    with open_run(c, to) as run:
        source_engine = Engine.connect(next(iter(source.deploy.docker_hosts), None))
        try:
            releases = source_engine.list_releases(source.deploy.name, from_)
        finally:
            source_engine.close()
        current = current_release(releases)
        if current is None:
            raise EnvtasksError(f"nothing is current in {from_} to promote")
        image = current.ref or f"{source.image}@{current.digest}"
        run.say(f"promoting {current.version} ({image}) from {from_} to {to}")
        _deploy_image(run, current.version, image, current.digest, float(lock_wait), "promote")


@envtask(help={"env": ENV_HELP})
def unlock(c: Context, env: str = "") -> None:
    """Remove a stale deploy lock, saying whose it was."""
    with open_run(c, _require_env(env)) as run:
        if run.dry:
            app = run.settings.deploy.name
            run.say(deploy_cli_lines(ReleaseLock(app, env), run.settings.masker)[0])
            return
        holder = _deployer(run, "unlock").unlock()
        if holder is None:
            run.say(f"{run.settings.deploy.name}-{env} is not locked")
        else:
            run.say(f"removed the lock of {run.settings.deploy.name}-{env} held by {holder}")


ns = Collection("deploy", deploy, rollback, releases, status, logs, promote, unlock)

"""Tasks for the running half of the job: deploy, rollback, releases, status, logs, promote."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from invoke import Collection, Context

from .deployer import Deployer, utc_now
from .engine import Engine, is_local_address
from .errors import EnvtasksError
from .fleet import Fleet, HostOutcome, prefixed
from .health import probe_once
from .plan import image_revision
from .release import (
    PullImage,
    Release,
    ReleaseLock,
    SwitchPlan,
    config_fingerprint,
    current_release,
    deploy_cli_lines,
    newest_first,
    plan_deploy,
    plan_rollback,
    release_environment,
    release_labels,
    render_locked,
    rollback_target,
    statuses,
    wait_step,
)
from .runner import Run, envtask, open_run
from .swarm_tasks import (
    deploy_to_swarm,
    rollback_swarm,
    swarm_current_ref,
    swarm_logs,
    swarm_rows,
    swarm_status,
    swarm_unlock,
)

ENV_HELP = "the environment, e.g. --env=prod"
LOCK_WAIT_HELP = "seconds to wait for another deploy's lock (default 0: fail at once)"


def _require_env(env: str) -> str:
    if not env:
        raise EnvtasksError("this task needs --env=E, e.g. --env=prod")
    return env


def _fleet(run: Run, task: str) -> Fleet:
    settings = run.settings
    assert settings.env is not None
    return Fleet(run.engines(), settings.deploy.name, settings.env, run.say, settings.masker, task)


def resolve_image(run: Run, version: str) -> tuple[str, str]:
    """``image@digest`` from the registry (or, on a local engine, the local image), and the digest.

    A dry run shows a placeholder for a digest that the registry does not have yet.
    """
    ref = f"{run.settings.image}:{version}"
    engine = run.reader()
    try:
        digest = engine.registry_digest(ref, run.registry_auth())
    except EnvtasksError as registry_error:
        single_local = len(run.engines()) == 1 and is_local_address(engine.address)
        local = engine.image_id(ref) if single_local else None
        if local is None and run.dry:
            # `invoke --dry build push deploy` has pushed nothing: show the plan all the same.
            run.say(
                f"# {registry_error.message}; the plan shows <digest of {version}> in its place"
            )
            return f"{run.settings.image}@<digest of {version}>", f"<digest of {version}>"
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
    """Switch the env to ``image`` (pinned by digest) on each engine, health-gated, locked."""
    settings = run.settings
    assert settings.env is not None
    fingerprint = config_fingerprint(
        release_environment(settings, version), settings.deploy.ports, image, settings.deploy.health
    )
    pull = image != digest  # a bare image ID is local and cannot be pulled
    if run.dry:
        several = len(run.engines()) > 1
        for engine in run.engines():
            releases = engine.list_releases(settings.deploy.name, settings.env)
            labels = release_labels(
                settings, version, image, digest, "<from the image>", "<now>", fingerprint
            )
            plan = plan_deploy(settings, version, image, labels, releases)
            before = [PullImage(image)] if pull else []
            if several:
                run.say(f"# on {engine.address}:")
            for line in render_locked(
                settings.deploy.name, settings.env, plan, settings.masker, before
            ):
                run.say(line)
        return

    def prepare(deployer: Deployer) -> SwitchPlan | None:
        engine = deployer.engine
        releases = deployer.releases()
        current = current_release(releases)
        if current and current.digest == digest and current.config == fingerprint:
            healthy, answer = probe_once(engine, wait_step(settings, current.name))
            if healthy:
                deployer.say(f"{version} is already current and healthy ({answer}); nothing to do")
                return None
        found = engine.find_image(image)
        if pull:
            deployer.show(PullImage(image))
            if found is None:
                engine.pull(image, run.registry_auth(), deployer.say)
                found = engine.find_image(image)
            else:
                deployer.say(f"pull: {image} is already on the engine (pinned by digest)")
        if found is None:
            raise EnvtasksError(f"image {image} does not exist on {engine.address}")
        revision = image_revision(found)
        labels = release_labels(settings, version, image, digest, revision, utc_now(), fingerprint)
        return plan_deploy(settings, version, image, labels, releases)

    fleet = _fleet(run, task)
    started = time.monotonic()
    with fleet.locked(lock_wait):
        outcomes = fleet.switch_all(prepare)
        # Also after a no-op: a deploy killed while pruning left the job half done.
        pruned = [
            name
            for outcome in outcomes
            for name in outcome.deployer.prune(
                settings.deploy.keep, outcome.plan.target if outcome.plan else None
            )
        ]
    _report(run, outcomes, image, time.monotonic() - started, pruned)


def _deploy_any(
    run: Run, version: str, image: str, digest: str, lock_wait: float, task: str
) -> None:
    if run.settings.deploy.target == "swarm":
        deploy_to_swarm(run, version, image, digest, lock_wait, task)
    else:
        _deploy_image(run, version, image, digest, lock_wait, task)


def _current_ref(run: Run) -> tuple[str, str, str] | None:
    """(version, image@digest, digest) of what is current in the run's env."""
    settings = run.settings
    assert settings.env is not None
    if settings.deploy.target == "swarm":
        return swarm_current_ref(run)
    current = current_release(run.reader().list_releases(settings.deploy.name, settings.env))
    if current is None:
        return None
    return current.version, current.ref or f"{settings.image}@{current.digest}", current.digest


def _report(
    run: Run, outcomes: list[HostOutcome], image: str, seconds: float, pruned: list[str]
) -> None:
    switched = [o for o in outcomes if o.plan is not None]
    if not switched:
        if len(outcomes) > 1:
            run.say(f"every engine already runs it in {run.settings.env}; nothing to do")
        return
    plan = switched[0].plan
    assert plan is not None
    note = f"; pruned {', '.join(pruned)}" if pruned else ""
    where = f" on {len(switched)} engines" if len(outcomes) > 1 else ""
    run.say(
        f"{run.settings.env} now runs {plan.version} as {plan.target} ({image}){where}, healthy "
        f"in {seconds:.1f}s: {switched[0].answer}{note}"
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
        _deploy_any(run, tag, image, digest, float(lock_wait), "deploy")


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
        if settings.deploy.target == "swarm":
            rollback_swarm(run, version or None, float(lock_wait))
            return
        if run.dry:
            releases = run.reader().list_releases(settings.deploy.name, settings.env)
            plan = plan_rollback(settings, rollback_target(releases, version or None), releases)
            for line in render_locked(settings.deploy.name, settings.env, plan, settings.masker):
                run.say(line)
            return
        wanted = version or None
        targets: list[Release] = []

        def prepare(deployer: Deployer) -> SwitchPlan | None:
            releases = deployer.releases()
            target = rollback_target(releases, wanted)
            targets.append(target)
            current = current_release(releases)
            if current is not None and current.name == target.name:
                deployer.say(f"{target.version} is already current; nothing to do")
                return None
            return plan_rollback(settings, target, releases)

        fleet = _fleet(run, "rollback")
        started = time.monotonic()
        with fleet.locked(float(lock_wait)):
            outcomes = fleet.switch_all(prepare)
        image = next(
            (
                r.ref or r.digest
                for o in outcomes
                if o.plan
                for r in o.deployer.releases()
                if r.name == o.plan.target
            ),
            "",
        )
        _report(run, outcomes, image, time.monotonic() - started, [])


def _current_versions(run: Run) -> dict[str, str]:
    settings = run.settings
    assert settings.env is not None
    found = {}
    for engine in run.engines():
        current = current_release(engine.list_releases(settings.deploy.name, settings.env))
        found[engine.address] = current.version if current else "(nothing)"
    return found


def _disagreement(versions: dict[str, str]) -> str:
    if len(set(versions.values())) <= 1:
        return ""
    runs = ", ".join(f"{host} runs {version}" for host, version in versions.items())
    return f"engines disagree: {runs}"


@envtask(help={"env": ENV_HELP, "json": "print a JSON list"})
def releases(c: Context, env: str = "", json_: bool = False) -> None:
    """The kept releases of an env, newest first, with their status (per engine if several)."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        several = len(run.engines()) > 1 and settings.deploy.target != "swarm"
        rows: list[dict[str, str]] = swarm_rows(run) if settings.deploy.target == "swarm" else []
        for engine in run.engines() if settings.deploy.target != "swarm" else []:
            for release, state in statuses(
                engine.list_releases(settings.deploy.name, settings.env)
            ):
                row = release.as_row(state)
                if several:
                    row["host"] = engine.address
                rows.append(row)
        disagreement = _disagreement(_current_versions(run)) if several else ""
        if disagreement:
            print(settings.mask(f"envtasks: warning: {disagreement}"), file=sys.stderr)
        if json_:
            run.say(json.dumps(rows, indent=2))
            return
        if not rows:
            run.say(f"no releases of {settings.deploy.name} in {settings.env}")
            return
        columns: tuple[str, ...] = ("host",) if several else ()
        columns += ("version", "status", "deployed_at", "digest", "revision")
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in columns}
        run.say("  ".join(k.upper().ljust(widths[k]) for k in columns).rstrip())
        for row in rows:
            run.say("  ".join(row[k].ljust(widths[k]) for k in columns).rstrip())


@envtask(help={"env": ENV_HELP})
def status(c: Context, env: str = "") -> None:
    """What runs in an env, since when, and whether it is healthy (on every engine)."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        assert settings.env is not None
        if settings.deploy.target == "swarm":
            swarm_status(run)
            return
        problems = []
        for engine in run.engines():
            releases = engine.list_releases(settings.deploy.name, settings.env)
            current = current_release(releases)
            if current is None:
                kept = ", ".join(r.version for r in newest_first(releases)) or "none"
                run.say(f"{settings.env} on {engine.address}: nothing runs (kept: {kept})")
                problems.append(
                    f"nothing of {settings.deploy.name} runs in {settings.env} on {engine.address}"
                )
                continue
            info = engine.inspect_container(current.name)
            healthy, answer = probe_once(engine, wait_step(settings, current.name))
            run.say(f"{settings.env} on {engine.address}: {current.version} ({current.name})")
            run.say(f"  image:    {current.ref or current.digest}")
            run.say(
                f"  running since {info['State'].get('StartedAt', '?')}, "
                f"deployed {current.deployed_at}"
            )
            run.say(f"  health:   {'healthy' if healthy else 'UNHEALTHY'} ({answer})")
            if not healthy:
                problems.append(f"{current.name} on {engine.address} is not healthy: {answer}")
        if len(run.engines()) > 1:
            disagreement = _disagreement(_current_versions(run))
            if disagreement:
                run.say(f"WARNING: {disagreement}")
                problems.append(disagreement)
        if problems:
            raise EnvtasksError("; ".join(problems))


@envtask(
    help={
        "env": ENV_HELP,
        "follow": "keep printing new lines",
        "tail": "lines to show (default 100)",
    }
)
def logs(c: Context, env: str = "", follow: bool = False, tail: int = 100) -> None:
    """The current release's logs (the newest release's if none runs), from every engine."""
    with open_run(c, _require_env(env)) as run:
        settings = run.settings
        app, env_name = settings.deploy.name, _require_env(env)
        if settings.deploy.target == "swarm":
            with suppress(KeyboardInterrupt):
                swarm_logs(run, int(tail), follow)
            return
        engines = run.engines()

        def show(engine: Engine) -> None:
            say = prefixed(run.say, engine.address) if len(engines) > 1 else run.say
            releases = engine.list_releases(app, env_name)
            chosen = current_release(releases) or next(iter(newest_first(releases)), None)
            if chosen is None:
                say(f"no releases of {settings.deploy.name} in {settings.env}")
                return
            for line in engine.follow_logs(chosen.name, tail=int(tail), follow=follow):
                say(line)

        try:
            with ThreadPoolExecutor(max_workers=len(engines)) as pool:
                for future in [pool.submit(show, engine) for engine in engines]:
                    future.result()
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
    with open_run(c, from_) as source, open_run(c, to) as run:
        found = _current_ref(source)
        if found is None:
            raise EnvtasksError(f"nothing is current in {from_} to promote")
        version, image, digest = found
        run.say(f"promoting {version} ({image}) from {from_} to {to}")
        _deploy_any(run, version, image, digest, float(lock_wait), "promote")


@envtask(help={"env": ENV_HELP})
def unlock(c: Context, env: str = "") -> None:
    """Remove a stale deploy lock, saying whose it was."""
    with open_run(c, _require_env(env)) as run:
        if run.dry:
            app = run.settings.deploy.name
            run.say(deploy_cli_lines(ReleaseLock(app, env), run.settings.masker)[0])
            return
        if run.settings.deploy.target == "swarm":
            holder = swarm_unlock(run)
            what = f"{run.settings.deploy.name}-{env}"
            run.say(
                f"removed the lock of {what} held by {holder}"
                if holder
                else f"{what} is not locked"
            )
            return
        for deployer in _fleet(run, "unlock").deployers:
            holder = deployer.unlock()
            if holder is None:
                deployer.say(f"{run.settings.deploy.name}-{env} is not locked")
            else:
                deployer.say(
                    f"removed the lock of {run.settings.deploy.name}-{env} held by {holder}"
                )


ns = Collection("deploy", deploy, rollback, releases, status, logs, promote, unlock)

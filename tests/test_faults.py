"""Real faults in the real engine and registry: a failure in the middle never leaves an env dark."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from apps import App
from faults import RegistryFront
from helpers import assert_one_line_error, registry_tags

pytestmark = pytest.mark.engine

# The first line that a deploy prints at or after each step of its plan.
KILL_POINTS = {
    "after pull": "$ docker create",
    "after create": "$ docker stop",
    "after stopping the old": "$ docker start",
    "during the health wait": "# wait up to",
    "during pruning": "$ docker rm --force",
}


def slow_health(app: App, keep: int = 5) -> None:
    """A grace period long enough to be killed in, and a keep that makes pruning happen."""
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTH_GRACE=3\nENVTASKS_HEALTH_TIMEOUT=20\n"
        f"ENVTASKS_KEEP={keep}\nGREETING=hello\n",
    )


def kept_matches_engine(app: App, env: str = "dev") -> None:
    """No container of the app+env outside the kept releases, and no lock left."""
    listed = {f"{app.name}-{env}-{r['version']}" for r in app.releases(env)}
    on_engine = {
        n for n in app.containers() if f"-{env}-" in n and not n.startswith("envtasks-lock")
    }
    # Renamed-aside and failed releases are listed under their version: compare by prefix.
    assert all(any(n.startswith(base) for base in listed) for n in on_engine), (listed, on_engine)
    assert len(on_engine) == len(app.releases(env))
    assert not any(n.startswith("envtasks-lock-") for n in app.containers())


@pytest.mark.contract("killed mid-deploy (SIGKILL, SIGINT)")
@pytest.mark.parametrize(
    "signal_number", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"]
)
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_mid_deploy_recovers(app: App, point: str, signal_number: int) -> None:
    slow_health(app, keep=2)
    for version in ("v1", "v2", "v3"):
        app.release(version)
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    assert app.invoke("deploy", "--env=dev", "--version=v2").code == 0
    proc = app.spawn("deploy", "--env=dev", "--version=v3")
    assert proc.stdout is not None
    marker = KILL_POINTS[point]
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            proc.send_signal(signal_number)
            break
    else:
        pytest.fail(f"never reached {point!r}: {''.join(seen)}")
    proc.communicate(timeout=60)

    # One more deploy (or a rollback) brings the env back without manual cleanup.
    done = app.invoke("deploy", "--env=dev", "--version=v3")
    assert done.code == 0, done.text
    if signal_number == signal.SIGKILL:
        assert "taking over the stale lock" in done.out
    assert app.wait_answer("dev").startswith("env=dev version=v3")
    assert [r["status"] for r in app.releases("dev")].count("current") == 1
    kept_matches_engine(app)
    rollback = app.invoke("rollback", "--env=dev")
    assert rollback.code == 0, rollback.text
    assert app.wait_answer("dev").startswith("env=dev version=v")


@pytest.mark.contract("killed mid-deploy (SIGKILL, SIGINT)")
def test_killed_then_rollback_recovers(app: App) -> None:
    slow_health(app)
    for version in ("v1", "v2"):
        app.release(version)
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    proc = app.spawn("deploy", "--env=dev", "--version=v2")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("$ docker start"):
            proc.kill()
            break
    proc.communicate(timeout=60)
    done = app.invoke("rollback", "--env=dev")
    assert done.code == 0, done.text
    assert app.wait_answer("dev").startswith("env=dev version=v1")
    kept_matches_engine(app)


@pytest.fixture
def front() -> Iterator[RegistryFront]:
    proxy = RegistryFront().start()
    yield proxy
    proxy.stop()


def use_front(app: App, front: RegistryFront) -> str:
    image = f"{front.host}/{app.project.image.split('/', 1)[1]}"
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={image}\nENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_HEALTH_TIMEOUT=8\nGREETING=hello\n",
    )
    return image


@pytest.mark.contract("registry answering 500 / stopped during push")
def test_push_retries_transient_500s(app: App, front: RegistryFront) -> None:
    image = use_front(app, front)
    assert app.invoke("build", "--version=v1").code == 0
    # The engine retries failed layer uploads itself; a failed manifest upload ends its push.
    front.plan.fail_next, front.plan.fail_paths = 1, ("/manifests/",)
    done = app.invoke("push", "--version=v1")
    assert done.code == 0, done.text
    assert "transient; retrying" in done.out and front.plan.failed == 1
    assert done.out.splitlines()[-1].startswith(f"{image}:v1@sha256:")


@pytest.mark.contract("registry answering 500 / stopped during push")
def test_push_to_a_failing_registry_records_nothing(app: App, front: RegistryFront) -> None:
    image = use_front(app, front)
    assert app.invoke("build", "--version=v1").code == 0
    # Every manifest upload fails (a failing layer upload the engine retries for minutes).
    front.plan.fail_always, front.plan.fail_paths = True, ("/manifests/",)
    done = app.invoke("push", "--version=v1")
    assert_one_line_error(done, f"pushing {image}:v1 failed after 4 attempts", "500")
    front.plan.fail_always = False
    with pytest.raises(OSError):
        registry_tags("localhost:5000", image.split("/", 1)[1])


@pytest.mark.contract("registry answering 500 / stopped during deploy's pull")
@pytest.mark.parametrize("fault", ["500 on the manifest", "500 on the layers", "stopped"])
def test_deploy_with_a_failing_registry_leaves_the_current_release(
    app: App, front: RegistryFront, fault: str
) -> None:
    image = use_front(app, front)
    for version in ("v1", "v2"):
        app.release(version)
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    # Make the engine pull v2 for real.
    app.docker.images.remove(f"{image}:v2", force=True)  # type: ignore[attr-defined]
    if fault == "500 on the manifest":
        front.plan.fail_always = True
    elif fault == "500 on the layers":
        front.plan.fail_always, front.plan.fail_paths = True, ("/blobs/",)
    else:
        front.stop()
    before = app.releases("dev")
    host = front.host
    done = app.invoke("deploy", "--env=dev", "--version=v2")
    assert_one_line_error(done, host, "500" if fault.startswith("500") else "v2")
    assert app.releases("dev") == before, "nothing is recorded as released"
    assert app.answer("dev").startswith("env=dev version=v1")
    if fault == "stopped":
        front.__init__()  # type: ignore[misc]  # a fresh server for the fixture's stop()
        front.start()


@pytest.mark.contract("engine stopped or its socket missing")
def test_missing_engine_socket_names_the_address(app: App) -> None:
    for args in (
        ("deploy", "--env=dev", "--version=v1"),
        ("status", "--env=dev"),
        ("releases", "--env=dev"),
    ):
        done = app.invoke(*args, env={"ENVTASKS_DOCKER_HOST": "unix:///run/no-such-engine.sock"})
        assert_one_line_error(done, "unix:///run/no-such-engine.sock", "not reachable")


@pytest.mark.contract("name collision with a hand-made container")
def test_hand_made_container_with_the_target_name(app: App) -> None:
    app.release("v1")
    app.release("v2")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    squatter = app.docker.containers.create(  # type: ignore[attr-defined]
        f"{app.project.image}:v2", name=f"{app.name}-dev-v2"
    )
    try:
        done = app.invoke("deploy", "--env=dev", "--version=v2")
        assert_one_line_error(done, f"{app.name}-dev-v2 already exists", "not an envtasks release")
        assert app.answer("dev").startswith("env=dev version=v1")
        assert squatter.id in [c.id for c in app.docker.containers.list(all=True)]  # type: ignore[attr-defined]
        assert "is not locked" in app.invoke("unlock", "--env=dev").out
    finally:
        squatter.remove(force=True)


@pytest.mark.contract("5 concurrent deploys to one env")
def test_five_concurrent_deploys(app: App) -> None:
    versions = [f"c{i}" for i in range(5)]
    for version in versions:
        app.release(version)
    procs = [
        app.spawn("deploy", "--env=dev", f"--version={v}", "--lock-wait=300") for v in versions
    ]
    started = time.monotonic()
    codes = [p.wait(timeout=600) for p in procs]
    outputs = [p.communicate() for p in procs]
    assert codes == [0] * 5, outputs
    assert time.monotonic() - started < 600
    rows = app.releases("dev")
    assert [r["status"] for r in rows].count("current") == 1
    assert sorted(r["version"] for r in rows) == sorted(versions)
    current = next(r["version"] for r in rows if r["status"] == "current")
    assert app.answer("dev") == f"env=dev version={current} greeting=hi from dev"
    assert len(app.running("dev")) == 1
    kept_matches_engine(app)

"""deploy, rollback, releases, promote and the lock, against the real engine and registry."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import docker.errors
import pytest
from apps import App
from helpers import assert_one_line_error

pytestmark = pytest.mark.engine


def test_deploy_rollback_and_releases(app: App) -> None:
    app.release("v1")
    app.release("v2")
    done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert app.answer("dev") == "env=dev version=v1 greeting=hi from dev"

    done = app.invoke("deploy", "--env=dev", "--version=v2")
    assert done.code == 0, done.text
    assert app.answer("dev") == "env=dev version=v2 greeting=hi from dev"
    rows = app.releases("dev")
    assert [(r["version"], r["status"]) for r in rows] == [("v2", "current"), ("v1", "previous")]
    assert all(set(r) == {"version", "digest", "deployed_at", "status", "revision"} for r in rows)
    assert all(r["digest"].startswith("sha256:") for r in rows)
    assert rows[0]["revision"] == app.project.git("rev-parse", "HEAD")

    done = app.invoke("rollback", "--env=dev")
    assert done.code == 0, done.text
    assert app.answer("dev") == "env=dev version=v1 greeting=hi from dev"
    assert [r["status"] for r in app.releases("dev")] == ["previous", "current"]

    done = app.invoke("rollback", "--env=dev", "--version=v2")
    assert done.code == 0, done.text
    assert app.answer("dev") == "env=dev version=v2 greeting=hi from dev"

    done = app.invoke("rollback", "--env=dev", "--version=v9")
    assert_one_line_error(done, "no kept release 'v9'", "v2 (current)", "v1 (previous)")
    assert app.running("dev") == [f"{app.name}-dev-v2"]


def test_deploy_pins_the_digest_not_the_tag(app: App, docker_client: object) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    container = docker_client.containers.get(f"{app.name}-dev-v1")  # type: ignore[attr-defined]
    image = container.attrs["Config"]["Image"]
    digest = app.releases("dev")[0]["digest"]
    assert image == f"{app.project.image}@{digest}"
    # Moving the tag afterwards changes nothing that runs.
    app.release("v1")
    assert container.attrs["Config"]["Image"] == image
    assert app.answer("dev").startswith("env=dev version=v1")


def test_redeploy_of_current_is_a_quick_no_op(app: App) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    started = time.monotonic()
    done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert "already current and healthy" in done.out
    assert (
        time.monotonic() - started < 5
    )  # includes starting Python; the task itself is well under 1 s
    assert len(app.releases("dev")) == 1


def test_changed_config_same_version_redeploys(app: App) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    app.set_env("dev", "GREETING=changed greeting\n")
    done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert app.answer("dev") == "env=dev version=v1 greeting=changed greeting"
    assert [r["status"] for r in app.releases("dev")] == ["current", "previous"]


def test_unhealthy_release_leaves_previous_serving(app: App) -> None:
    app.release("v1")
    app.release("v2")
    app.release("v3", healthy=False)
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    assert app.invoke("deploy", "--env=dev", "--version=v2").code == 0
    done = app.invoke("deploy", "--env=dev", "--version=v3")
    assert_one_line_error(
        done, "deploy of v3 to dev failed", "within 8s", "HTTP 404", "is serving again"
    )
    assert "last 50 log lines" in done.out
    assert app.answer("dev") == "env=dev version=v2 greeting=hi from dev"
    rows = app.releases("dev")
    assert [(r["version"], r["status"]) for r in rows] == [
        ("v3", "failed"),
        ("v2", "current"),
        ("v1", "previous"),
    ]
    # A failed release is kept for inspection but never a rollback target.
    done = app.invoke("rollback", "--env=dev")
    assert done.code == 0, done.text
    assert app.answer("dev").startswith("env=dev version=v1")


def test_keep_prunes_only_this_env(app: App) -> None:
    app.project.write(
        "envs/base.env",
        (app.project.root / "envs/base.env").read_text() + "ENVTASKS_KEEP=2\n",
    )
    for version in ("v1", "v2", "v3"):
        app.release(version)
    assert app.invoke("deploy", "--env=prod", "--version=v1").code == 0
    for version in ("v1", "v2", "v3"):
        done = app.invoke("deploy", "--env=dev", f"--version={version}")
        assert done.code == 0, done.text
    assert [r["version"] for r in app.releases("dev")] == ["v3", "v2"]
    assert [r["version"] for r in app.releases("prod")] == ["v1"]
    assert app.answer("prod") == "env=prod version=v1 greeting=hi from prod"


def test_two_envs_on_one_engine_are_isolated(app: App) -> None:
    app.release("v1")
    app.release("v2")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    assert app.invoke("deploy", "--env=prod", "--version=v2").code == 0
    assert app.invoke("deploy", "--env=dev", "--version=v2").code == 0
    assert app.invoke("rollback", "--env=dev").code == 0
    assert app.answer("dev") == "env=dev version=v1 greeting=hi from dev"
    assert app.answer("prod") == "env=prod version=v2 greeting=hi from prod"
    assert [r["version"] for r in app.releases("prod")] == ["v2"]
    assert app.running("prod") == [f"{app.name}-prod-v2"]


def test_promote_deploys_the_exact_digest(app: App) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    app.release("v1")  # the tag moves; promote must not follow it
    done = app.invoke("promote", "--from=dev", "--to=prod")
    assert done.code == 0, done.text
    dev, prod = app.releases("dev")[0], app.releases("prod")[0]
    assert prod["digest"] == dev["digest"] and prod["version"] == "v1"
    assert app.answer("prod") == "env=prod version=v1 greeting=hi from prod"


def test_dry_deploy_changes_nothing(app: App) -> None:
    app.release("v1")
    app.release("v2")
    assert app.invoke("deploy", "--env=prod", "--version=v1").code == 0

    def ps() -> str:
        return subprocess.run(
            ["docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    before = ps()
    done = app.invoke("--dry", "deploy", "--env=prod", "--version=v2")
    assert done.code == 0, done.text
    assert f"docker stop {app.name}-prod-v1" in done.out
    assert "DB_PASSWORD=******" in done.out and "s3cr3t-prod-pw" not in done.text
    assert f"--publish 127.0.0.1:{app.ports['prod']}:8080" in done.out
    dry_rollback = app.invoke("--dry", "rollback", "--env=prod")
    assert dry_rollback.code != 0  # nothing before v1 to go back to
    # The whole chain: nothing is pushed, so deploy shows where the digest will go.
    chain = app.invoke("--dry", "build", "--version=v9", "push", "deploy", "--env=prod")
    assert chain.code == 0, chain.text
    assert f"docker image push {app.project.image}:v9" in chain.out
    assert f"docker pull '{app.project.image}@<digest of v9>'" in chain.out
    assert f"docker stop {app.name}-prod-v1" in chain.out
    assert f"docker start {app.name}-prod-v9" in chain.out
    assert ps() == before
    assert app.answer("prod").startswith("env=prod version=v1")


def test_concurrent_deploys_never_both_run(app: App) -> None:
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTH_GRACE=3\nGREETING=hello\n",
    )
    app.release("v1")
    app.release("v2")
    procs = [app.spawn("deploy", "--env=dev", f"--version={version}") for version in ("v1", "v2")]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(err for code, _, err in results if code != 0)
    assert "is locked by" in loser and "(deploy) since" in loser
    assert len(app.running("dev")) == 1
    assert [r["status"] for r in app.releases("dev")] == ["current"]


def test_lock_wait_lets_the_second_deploy_follow(app: App) -> None:
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTH_GRACE=2\nGREETING=hello\n",
    )
    app.release("v1")
    app.release("v2")
    first = app.spawn("deploy", "--env=dev", "--version=v1")
    time.sleep(1.0)
    second = app.invoke("deploy", "--env=dev", "--version=v2", "--lock-wait=60")
    assert first.wait(timeout=60) == 0
    assert second.code == 0, second.text
    assert "waiting for the lock" in second.out
    assert [(r["version"], r["status"]) for r in app.releases("dev")] == [
        ("v2", "current"),
        ("v1", "previous"),
    ]


def test_lock_held_elsewhere_and_unlock(app: App, docker_client: object) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0  # makes the lock image
    docker_client.containers.create(  # type: ignore[attr-defined]
        "envtasks/lock:1",
        command=["locked"],
        name=f"envtasks-lock-{app.name}-dev",
        labels={
            "envtasks.lock.user": "ci",
            "envtasks.lock.host": "runner-7",
            "envtasks.lock.pid": "4242",
            "envtasks.lock.task": "deploy",
            "envtasks.lock.since": "2026-01-01T00:00:00Z",
        },
    )
    done = app.invoke("rollback", "--env=dev")
    assert_one_line_error(
        done, "locked by ci@runner-7 pid 4242 (deploy) since 2026-01-01T00:00:00Z"
    )
    done = app.invoke("unlock", "--env=dev")
    assert done.code == 0, done.text
    assert "held by ci@runner-7 pid 4242" in done.out
    assert "is not locked" in app.invoke("unlock", "--env=dev").out


def test_lock_image_is_made_when_the_engine_lacks_it(app: App, docker_client: object) -> None:
    app.release("v1")
    images = docker_client.images  # type: ignore[attr-defined]
    with contextlib.suppress(docker.errors.ImageNotFound):
        images.remove("envtasks/lock:1")
    done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert images.get("envtasks/lock:1").attrs["Size"] == 0
    assert app.releases("dev")[0]["status"] == "current"


def test_stale_lock_of_a_killed_deploy_is_taken_over(app: App) -> None:
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTH_GRACE=30\nENVTASKS_HEALTH_TIMEOUT=60\nGREETING=hello\n",
    )
    app.release("v1")
    killed = app.spawn("deploy", "--env=dev", "--version=v1")
    assert killed.stdout is not None
    for line in killed.stdout:
        if line.startswith("# wait up to"):
            break
    killed.kill()
    killed.wait()
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTHCHECK=/healthz\nGREETING=hello\n",
    )
    done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert done.code == 0, done.text
    assert "taking over the stale lock" in done.out
    assert app.answer("dev").startswith("env=dev version=v1")


def test_sigint_releases_the_lock_and_switches_back(app: App) -> None:
    app.release("v1")
    app.release("v2")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    app.project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={app.project.image}\nENVTASKS_HEALTH_GRACE=30\nENVTASKS_HEALTH_TIMEOUT=60\nGREETING=hello\n",
    )
    proc = app.spawn("deploy", "--env=dev", "--version=v2")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("# wait up to") and "-v2" in line:
            break
    proc.send_signal(2)
    code = proc.wait(timeout=60)
    assert code != 0
    assert app.running("dev") == [f"{app.name}-dev-v1"]
    assert "is not locked" in app.invoke("unlock", "--env=dev").out
    assert app.answer("dev").startswith("env=dev version=v1")


def test_port_taken_is_a_clear_error(app: App) -> None:
    app.release("v1")
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", app.ports["dev"]))
        blocker.listen()
        done = app.invoke("deploy", "--env=dev", "--version=v1")
    assert_one_line_error(done, "port", "already")
    assert app.running("dev") == []


def test_missing_version_and_dead_engine(app: App) -> None:
    done = app.invoke("deploy", "--env=dev", "--version=never-pushed")
    assert_one_line_error(done, "cannot deploy", "never-pushed", "push it first")
    assert "manifest unknown: manifest unknown" not in done.err
    done = app.invoke(
        "deploy",
        "--env=dev",
        "--version=v1",
        env={"ENVTASKS_DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert_one_line_error(done, "unix:///nonexistent.sock", "not reachable")


def test_status_and_logs(app: App) -> None:
    app.release("v1")
    assert app.invoke("deploy", "--env=dev", "--version=v1").code == 0
    app.answer("dev")
    done = app.invoke("status", "--env=dev")
    assert done.code == 0, done.text
    assert "v1" in done.out and "healthy (GET" in done.out
    done = app.invoke("logs", "--env=dev", "--tail=5")
    assert done.code == 0, done.text
    assert_one_line_error(app.invoke("status", "--env=prod"), "nothing of", "runs in prod")


def test_unpushed_local_image_is_deployed_by_id_and_said(app: App) -> None:
    done = app.invoke("build", "--version=local-only")
    assert done.code == 0, done.text
    done = app.invoke("deploy", "--env=dev", "--version=local-only")
    assert done.code == 0, done.text
    assert "is not in the registry" in done.out and "using the local image sha256:" in done.out
    assert app.answer("dev").startswith("env=dev version=local-only")
    app.docker.images.remove(f"{app.project.image}:local-only", force=True)  # type: ignore[attr-defined]


def test_run_detached_and_in_the_foreground(app: App) -> None:
    app.release("v1")
    done = app.invoke("run", "--env=prod", "--version=v1", "--detach")
    assert done.code == 0, done.text
    assert app.wait_answer("prod") == "env=prod version=v1 greeting=hi from prod"
    assert app.releases("prod") == [], "a run is not a release"
    app.docker.containers.get(f"{app.name}-prod-run").remove(force=True)  # type: ignore[attr-defined]

    proc = app.spawn("run", "--env=prod", "--version=v1")
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(f"running {app.name}-prod-run")
    assert app.wait_answer("prod").startswith("env=prod version=v1")
    proc.send_signal(2)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while app.docker.containers.list(all=True, filters={"name": f"{app.name}-prod-run"}):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the foreground run's container is removed"
        time.sleep(0.2)

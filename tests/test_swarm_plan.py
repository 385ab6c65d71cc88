"""The Swarm service spec and its history are pure data."""

from __future__ import annotations

from pathlib import Path

import pytest

from envtasks.config import HealthCheck, PortSpec, load_settings
from envtasks.errors import EnvtasksError
from envtasks.masking import Masker
from envtasks.swarm import (
    SwarmRelease,
    healthcheck_test,
    history_from_labels,
    history_label,
    monitor_seconds,
    plan_service,
    render_service,
    secret_name,
    split_environment,
    swarm_rollback_target,
    trimmed,
    update_order,
    with_current,
)


def entry(version: str, status: str = "previous", at: str = "") -> SwarmRelease:
    return SwarmRelease(
        version, f"img@sha256:{version}", f"sha256:{version}", at or version, "rev", status
    )


def test_history_round_trips_through_the_label() -> None:
    history = [
        entry("v2", "current"),
        SwarmRelease("v1", "r", "d", "t", "x", "previous", (("A", "1"),), (("PW", "s"),)),
    ]
    assert history_from_labels({"envtasks.history": history_label(history)}) == history
    with pytest.raises(EnvtasksError, match="not envtasks' history"):
        history_from_labels({"envtasks.history": "{nope"})


def test_with_current_prepends_new_and_keeps_place_of_kept() -> None:
    history = [entry("v2", "current"), entry("v1")]
    new = with_current(history, entry("v3", "current"))
    assert [(e.version, e.status) for e in new] == [
        ("v3", "current"),
        ("v2", "previous"),
        ("v1", "previous"),
    ]
    back = with_current(new, entry("v1"))
    assert [(e.version, e.status) for e in back] == [
        ("v3", "previous"),
        ("v2", "previous"),
        ("v1", "current"),
    ]


def test_trimmed_keeps_current() -> None:
    history = [entry("v4"), entry("v3"), entry("v2"), entry("v1", "current")]
    kept, dropped = trimmed(history, 2)
    assert [e.version for e in kept] == ["v4", "v1"]
    assert [e.version for e in dropped] == ["v3", "v2"]


def test_rollback_target() -> None:
    history = [entry("v3", "failed"), entry("v2", "current"), entry("v1")]
    assert swarm_rollback_target(history, None).version == "v1"
    assert swarm_rollback_target(history, "v1").version == "v1"
    with pytest.raises(EnvtasksError, match="no kept release 'v3'"):
        swarm_rollback_target(history, "v3")


def test_update_order_and_monitor() -> None:
    assert update_order([PortSpec("", 8080, 8080)]) == "stop-first"
    assert update_order([PortSpec("", None, 8080)]) == "start-first"
    assert update_order([]) == "start-first"
    assert monitor_seconds(HealthCheck(path="/h"), 30) == 30 + 3 + 2


def test_healthcheck_tests() -> None:
    assert healthcheck_test(HealthCheck(command=("pg_isready", "-q")), []) == [
        "CMD",
        "pg_isready",
        "-q",
    ]
    assert healthcheck_test(HealthCheck(), []) is None
    test = healthcheck_test(HealthCheck(path="/healthz"), [PortSpec("", None, 9000)])
    assert (
        test is not None and test[0] == "CMD-SHELL" and "http://127.0.0.1:9000/healthz" in test[1]
    )


def test_secret_names_follow_the_value() -> None:
    a = secret_name("shop", "prod", "DB_PASSWORD", "one")
    assert a.startswith("shop-prod-db_password-") and a == secret_name(
        "shop", "prod", "DB_PASSWORD", "one"
    )
    assert a != secret_name("shop", "prod", "DB_PASSWORD", "two")
    assert "one" not in a


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs/base.env").write_text(
        "ENVTASKS_IMAGE=localhost:5000/shop\nENVTASKS_TARGET=swarm\nENVTASKS_HEALTHCHECK=/healthz\n"
        "ENVTASKS_HEALTH_TIMEOUT=10\n"
    )
    (tmp_path / "envs/prod.env").write_text(
        "ENVTASKS_PORTS=8080:8080\nENVTASKS_REPLICAS=3\nDB_PASSWORD=pw-77\nGREETING=hi\n"
    )
    return load_settings(tmp_path, "prod", {})


def test_secrets_become_files(settings) -> None:  # type: ignore[no-untyped-def]
    plain, secrets = split_environment(settings, "v1")
    assert plain == {"ENVTASKS_ENV": "prod", "ENVTASKS_VERSION": "v1", "GREETING": "hi"}
    assert [(s.key, s.value) for s in secrets] == [("DB_PASSWORD", "pw-77")]
    release = SwarmRelease(
        "v1",
        "img@sha256:x",
        "sha256:x",
        "t1",
        "rev",
        "current",
        tuple(sorted(plain.items())),
        (("DB_PASSWORD", secrets[0].name),),
    )
    spec = plan_service(settings, release, [release])
    assert ("DB_PASSWORD_FILE", "/run/secrets/DB_PASSWORD") in spec.env
    assert all("pw-77" not in value for _, value in (*spec.env, *spec.labels))
    assert spec.order == "stop-first" and spec.replicas == 3


def test_render_service_create(settings) -> None:  # type: ignore[no-untyped-def]
    release = SwarmRelease(
        "v1", "img@sha256:x", "sha256:x", "t1", "rev", "current", (("GREETING", "hi"),)
    )
    spec = plan_service(settings, release, [release])
    (line,) = render_service(spec, False, (), Masker.of(["pw-77"]))
    assert line.startswith(
        "docker service create --name shop-prod --with-registry-auth --replicas 3"
    )
    assert (
        "--update-parallelism 1 --update-order stop-first --update-failure-action rollback" in line
    )
    assert "--update-monitor 15s" in line
    assert "--publish mode=host,target=8080,published=8080,protocol=tcp" in line
    assert line.endswith(" img@sha256:x")


def test_swarm_config_errors(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs/base.env").write_text("ENVTASKS_IMAGE=localhost:5000/shop\n")
    (tmp_path / "envs/a.env").write_text("ENVTASKS_REPLICAS=2\n")
    (tmp_path / "envs/b.env").write_text("ENVTASKS_TARGET=kubernetes\n")
    (tmp_path / "envs/c.env").write_text("ENVTASKS_TARGET=swarm\nENVTASKS_PORTS=127.0.0.1:80:80\n")
    (tmp_path / "envs/d.env").write_text("ENVTASKS_SECRETS_AS_ENV=maybe\n")
    for env, fragment in [
        ("a", "needs ENVTASKS_TARGET=swarm"),
        ("b", "must be container or swarm"),
        ("c", "drop the IP"),
        ("d", "must be true or false"),
    ]:
        with pytest.raises(EnvtasksError, match=fragment):
            load_settings(tmp_path, env, {})


def test_secrets_as_env_opt_out(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs/base.env").write_text(
        "ENVTASKS_IMAGE=localhost:5000/shop\nENVTASKS_TARGET=swarm\n"
    )
    (tmp_path / "envs/prod.env").write_text("ENVTASKS_SECRETS_AS_ENV=true\nDB_PASSWORD=pw-1\n")
    plain, secrets = split_environment(load_settings(tmp_path, "prod", {}), "v1")
    assert secrets == [] and plain["DB_PASSWORD"] == "pw-1"

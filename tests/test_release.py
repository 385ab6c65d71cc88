"""Release history and switch plans are pure data: tested as the CLI lines they render to."""

from __future__ import annotations

from pathlib import Path

import pytest

from envtasks.config import HealthCheck, load_settings
from envtasks.errors import EnvtasksError
from envtasks.release import (
    Release,
    config_fingerprint,
    plan_deploy,
    plan_rollback,
    releases_to_prune,
    render_locked,
    rollback_target,
    statuses,
)


def rel(version: str, at: str, running: bool = False, failed: bool = False) -> Release:
    name = f"shop-prod-{version}" + ("-failed-0123abcd" if failed else "")
    return Release(
        name, version, f"sha256:{version}", at, "rev", running, container_id=f"id{version}xxxxxx"
    )


HISTORY = [
    rel("v1", "2026-01-01"),
    rel("v2", "2026-01-02"),
    rel("v3", "2026-01-03", running=True),
    rel("v4", "2026-01-04", failed=True),
]


def test_statuses_newest_first() -> None:
    assert [(r.version, s) for r, s in statuses(HISTORY)] == [
        ("v4", "failed"),
        ("v3", "current"),
        ("v2", "previous"),
        ("v1", "previous"),
    ]


def test_rollback_target_is_the_one_before_current() -> None:
    assert rollback_target(HISTORY, None).version == "v2"
    assert rollback_target(HISTORY, "v1").version == "v1"


def test_rollback_never_targets_failed_or_missing() -> None:
    with pytest.raises(EnvtasksError) as err:
        rollback_target(HISTORY, "v4")
    assert "kept: v4 (failed), v3 (current), v2 (previous), v1 (previous)" in err.value.message
    with pytest.raises(EnvtasksError, match="no release before v1"):
        rollback_target([rel("v1", "2026-01-01", running=True)], None)


def test_prune_keeps_current_newest_good_and_latest_failure() -> None:
    assert [r.version for r in releases_to_prune(HISTORY, 2, "shop-prod-v3")] == ["v1"]
    # After a rollback to an old release, that release is kept whatever its age.
    assert [r.version for r in releases_to_prune(HISTORY, 2, "shop-prod-v1")] == ["v2"]
    # Failures never push out a good release: only the newest one newer than current stays.
    failures = [rel(f"f{i}", f"2026-02-0{i}", failed=True) for i in range(1, 4)]
    pruned = releases_to_prune([*HISTORY, *failures], 2, "shop-prod-v3")
    assert [r.version for r in pruned] == ["f2", "f1", "v4", "v1"]


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs/base.env").write_text(
        "ENVTASKS_IMAGE=localhost:5000/shop\nENVTASKS_HEALTHCHECK=/healthz\nENVTASKS_HEALTH_TIMEOUT=20\n"
    )
    (tmp_path / "envs/prod.env").write_text(
        "ENVTASKS_PORTS=127.0.0.1:8080:8080\nDB_PASSWORD=pw-9\nGREETING=hi there\n"
    )
    return load_settings(tmp_path, "prod", {})


def test_deploy_plan_renders_as_cli_lines(settings) -> None:  # type: ignore[no-untyped-def]
    labels = {"envtasks.app": "shop", "envtasks.version": "v5"}
    plan = plan_deploy(settings, "v5", "localhost:5000/shop@sha256:abc", labels, HISTORY)
    assert render_locked("shop", "prod", plan, settings.masker) == [
        "docker create --name envtasks-lock-shop-prod --label 'envtasks.lock.holder=<user@host pid>' envtasks/lock",
        "docker create --name shop-prod-v5 --init --restart unless-stopped"
        " --label envtasks.app=shop --label envtasks.version=v5"
        " --env 'DB_PASSWORD=******' --env ENVTASKS_ENV=prod --env ENVTASKS_VERSION=v5"
        " --env 'GREETING=hi there' --publish 127.0.0.1:8080:8080 localhost:5000/shop@sha256:abc",
        "docker stop shop-prod-v3",
        "docker start shop-prod-v5",
        "# wait up to 20s for shop-prod-v5: GET http://127.0.0.1:8080/healthz answers 2xx",
        "docker rm envtasks-lock-shop-prod",
        "# if a step from the switch on fails, instead:",
        "#   docker stop shop-prod-v5",
        "#   docker rename shop-prod-v5 'shop-prod-v5-failed-<id>'",
        "#   docker start shop-prod-v3",
        "#   # wait up to 20s for shop-prod-v3: GET http://127.0.0.1:8080/healthz answers 2xx",
    ]


def test_redeploy_of_same_version_keeps_the_old_container_aside(settings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_deploy(settings, "v3", "img@sha256:new", {}, HISTORY)
    lines = render_locked("shop", "prod", plan, settings.masker)
    assert lines[1] == "docker rename shop-prod-v3 shop-prod-v3-idv3xxxx"
    assert "docker stop shop-prod-v3-idv3xxxx" in lines
    assert "#   docker start shop-prod-v3-idv3xxxx" in lines


def test_first_deploy_has_nothing_to_stop(settings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_deploy(settings, "v1", "img@sha256:x", {}, [])
    lines = render_locked("shop", "prod", plan, settings.masker)
    assert not any(line.startswith("docker stop") for line in lines)
    assert lines[-2:] == [
        "#   docker stop shop-prod-v1",
        "#   docker rename shop-prod-v1 'shop-prod-v1-failed-<id>'",
    ]


def test_rollback_plan(settings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_rollback(settings, rollback_target(HISTORY, None), HISTORY)
    assert render_locked("shop", "prod", plan, settings.masker)[1:4] == [
        "docker stop shop-prod-v3",
        "docker start shop-prod-v2",
        "# wait up to 20s for shop-prod-v2: GET http://127.0.0.1:8080/healthz answers 2xx",
    ]


def test_fingerprint_changes_with_config() -> None:
    one = config_fingerprint({"A": "1"}, (), "img", HealthCheck(path="/h"))
    assert one == config_fingerprint({"A": "1"}, (), "img", HealthCheck(path="/h"))
    assert one != config_fingerprint({"A": "2"}, (), "img", HealthCheck(path="/h"))
    assert one != config_fingerprint({"A": "1"}, (), "img2", HealthCheck(path="/h"))

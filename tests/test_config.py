"""Env file layering, interpolation, validation and masking: pure, no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from envtasks.config import available_envs, load_settings, validate_env_name
from envtasks.errors import EnvtasksError

IMAGE = "ENVTASKS_IMAGE=localhost:5000/shop\n"


def make(root: Path, **files: str) -> Path:
    envs = root / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (envs / f"{name.replace('_local', '.local')}.env").write_text(text)
    return root


def entries(settings: object) -> dict[str, tuple[str, str]]:
    return {e.key: (e.value, e.origin) for e in (*settings.settings, *settings.app)}  # type: ignore[attr-defined]


def test_layers_override_in_order_and_record_origin(tmp_path: Path) -> None:
    make(
        tmp_path,
        base=IMAGE + "A=base\nB=base\nC=base\nD=base\n",
        prod="B=prod\nC=prod\nD=prod\n",
        prod_local="C=local\nD=local\n",
    )
    got = entries(load_settings(tmp_path, "prod", {"D": "process", "UNRELATED": "x"}))
    assert got["A"] == ("base", "envs/base.env:2")
    assert got["B"] == ("prod", "envs/prod.env:1")
    assert got["C"] == ("local", "envs/prod.local.env:1")
    assert got["D"] == ("process", "process environment")
    assert "UNRELATED" not in got, "the process environment only overrides declared keys"


def test_base_only_when_no_env(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "A=base\n", prod="A=prod\n")
    settings = load_settings(tmp_path, None, {})
    assert settings.env is None
    assert settings.app_environment() == {"A": "base"}


def test_process_environment_may_supply_any_setting(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE)
    settings = load_settings(tmp_path, None, {"ENVTASKS_REGISTRY_PASSWORD": "pw-from-ci"})
    assert settings.registry_password == "pw-from-ci"
    assert entries(settings)["ENVTASKS_REGISTRY_PASSWORD"] == ("pw-from-ci", "process environment")


def test_interpolation_after_merge_against_merged_then_process(tmp_path: Path) -> None:
    make(
        tmp_path,
        base=IMAGE + "URL=http://${HOST}:${PORT:-80}/${SUFFIX}\nHOST=base-host\n",
        prod="HOST=prod-host\n",
    )
    settings = load_settings(tmp_path, "prod", {"SUFFIX": "x"})
    assert settings.app_environment()["URL"] == "http://prod-host:80/x"


def test_interpolation_chains_and_default_for_empty(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "A=${B}\nB=${C}-b\nC=c\nE=\nF=${E:-fallback}\n")
    env = load_settings(tmp_path, None, {}).app_environment()
    assert env["A"] == "c-b"
    assert env["F"] == "fallback"


def test_self_reference_reads_process_environment_then_default(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "TOKEN_X=${TOKEN_X:-dflt}\n")
    assert load_settings(tmp_path, None, {}).app_environment()["TOKEN_X"] == "dflt"
    assert load_settings(tmp_path, None, {"TOKEN_X": "p"}).app_environment()["TOKEN_X"] == "p"


def test_unset_variable_is_an_error_naming_variable_and_file(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE, prod="URL=http://${DB_HOST}/\n")
    with pytest.raises(EnvtasksError) as err:
        load_settings(tmp_path, "prod", {})
    assert "DB_HOST" in err.value.message
    assert "envs/prod.env" in err.value.message


def test_cycle_is_an_error(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "A=${B}\nB=${A}\n")
    with pytest.raises(EnvtasksError, match="refers to itself"):
        load_settings(tmp_path, None, {})


def test_single_quoted_values_are_literal(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "PW='a$b${NOPE}c'\n")
    assert load_settings(tmp_path, None, {}).app_environment()["PW"] == "a$b${NOPE}c"


def test_process_values_are_never_expanded(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "A=x\n")
    assert load_settings(tmp_path, None, {"A": "${NOPE}"}).app_environment()["A"] == "${NOPE}"


def test_malformed_line_names_file_and_line_without_value(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + 'GOOD=1\nDB_PASSWORD="unterminated-secret\n')
    with pytest.raises(EnvtasksError) as err:
        load_settings(tmp_path, None, {})
    assert "envs/base.env line 3" in err.value.message
    assert "unterminated-secret" not in err.value.message


def test_bare_key_passes_process_value_or_fails(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "FROM_HOST\n")
    assert load_settings(tmp_path, None, {"FROM_HOST": "v"}).app_environment()["FROM_HOST"] == "v"
    with pytest.raises(EnvtasksError, match="line 2: FROM_HOST has no value"):
        load_settings(tmp_path, None, {})


def test_bom_and_crlf_files(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "base.env").write_bytes(b"\xef\xbb\xbfENVTASKS_IMAGE=localhost:5000/shop\r\nA=1\r\n")
    settings = load_settings(tmp_path, None, {})
    assert settings.image == "localhost:5000/shop"
    assert settings.app_environment() == {"A": "1"}


def test_unknown_setting_suggests_nearest(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "ENVTASKS_DOCKRFILE=x\n")
    with pytest.raises(EnvtasksError) as err:
        load_settings(tmp_path, None, {})
    assert "ENVTASKS_DOCKRFILE" in err.value.message
    assert "did you mean ENVTASKS_DOCKERFILE?" in err.value.message
    assert "envs/base.env line 2" in err.value.message


def test_unknown_setting_in_process_environment(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE)
    with pytest.raises(EnvtasksError, match="ENVTASKS_REGISTRY_PASSWORD"):
        load_settings(tmp_path, None, {"ENVTASKS_REGISTRY_PASWORD": "x"})


def test_version_only_from_process(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "ENVTASKS_VERSION=1\n")
    with pytest.raises(EnvtasksError, match="only come from the process environment"):
        load_settings(tmp_path, None, {})


@pytest.mark.parametrize("name", ["../x", "Prod", "", "a/b", "-x", "pr od", "é", "x.y"])
def test_invalid_env_names(tmp_path: Path, name: str) -> None:
    make(tmp_path, base=IMAGE)
    with pytest.raises(EnvtasksError, match="invalid env name"):
        load_settings(tmp_path, name, {})


def test_valid_env_names() -> None:
    for name in ("prod", "dev-2", "qa_1", "0"):
        assert validate_env_name(name) == name


def test_unknown_env_lists_existing(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE, dev="", prod="", prod_local="")
    assert available_envs(tmp_path / "envs") == ["dev", "prod"]
    with pytest.raises(EnvtasksError) as err:
        load_settings(tmp_path, "staging", {})
    assert err.value.message == "unknown env 'staging'; envs that exist: dev, prod"


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("", "ENVTASKS_IMAGE is not set"),
        ("shop", "must include the registry host"),
        ("team/shop", "must include the registry host"),
        ("localhost:5000/shop:1.0", "without tag or digest"),
        ("localhost:5000/shop@sha256:abc", "without tag or digest"),
        ("localhost:5000/Shop", "not a valid image repository"),
    ],
)
def test_image_validation(tmp_path: Path, image: str, fragment: str) -> None:
    make(tmp_path, base=f"ENVTASKS_IMAGE={image}\n")
    with pytest.raises(EnvtasksError, match=fragment):
        load_settings(tmp_path, None, {})


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("localhost:5000/shop", "localhost:5000"),
        ("registry.example.com/team/shop", "registry.example.com"),
        ("127.0.0.1:5000/a/b-c", "127.0.0.1:5000"),
        ("localhost/shop", "localhost"),
    ],
)
def test_image_registry(tmp_path: Path, image: str, registry: str) -> None:
    make(tmp_path, base=f"ENVTASKS_IMAGE={image}\n")
    assert load_settings(tmp_path, None, {}).registry == registry


def test_build_args_and_paths(tmp_path: Path) -> None:
    make(
        tmp_path,
        base=IMAGE + "ENVTASKS_BUILD_ARGS=A=1, B=x=y\nENVTASKS_DOCKERFILE=docker/App.Dockerfile\n",
    )
    settings = load_settings(tmp_path, None, {})
    assert settings.build_args == (("A", "1"), ("B", "x=y"))
    assert settings.dockerfile == tmp_path.resolve() / "docker/App.Dockerfile"
    assert settings.context == tmp_path.resolve()


def test_bad_build_arg(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "ENVTASKS_BUILD_ARGS=NOEQUALS\n")
    with pytest.raises(EnvtasksError, match="must be KEY=VALUE"):
        load_settings(tmp_path, None, {})


def test_dockerfile_outside_project(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "ENVTASKS_DOCKERFILE=../../etc/Dockerfile\n")
    with pytest.raises(EnvtasksError, match="points outside the project"):
        load_settings(tmp_path, None, {})


def test_secrets_are_detected_and_masked(tmp_path: Path) -> None:
    make(
        tmp_path,
        base=IMAGE + "DB_PASSWORD=pw1\nAPI_TOKEN=tok2\nSTRIPE_KEY=key3\nMY_PRIVATE_THING=priv4\n"
        "CLIENT_SECRET_VALUE=sec5\nCUSTOM=cust6\nKEYBOARD=not-secret\nENVTASKS_SECRETS=CUSTOM\n"
        "ENVTASKS_BUILD_ARGS=NPM_TOKEN=npm7\n",
    )
    settings = load_settings(tmp_path, None, {})
    secret = {e.key for e in settings.app if e.secret}
    assert secret == {
        "DB_PASSWORD",
        "API_TOKEN",
        "STRIPE_KEY",
        "MY_PRIVATE_THING",
        "CLIENT_SECRET_VALUE",
        "CUSTOM",
    }
    text = "pw1 tok2 key3 priv4 sec5 cust6 npm7 not-secret"
    assert settings.mask(text) == "****** ****** ****** ****** ****** ****** ****** not-secret"
    shown = {e.key: e.shown for e in settings.app}
    assert shown["DB_PASSWORD"] == "******"
    assert shown["KEYBOARD"] == "not-secret"


def test_registry_password_is_secret(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE)
    settings = load_settings(tmp_path, None, {"ENVTASKS_REGISTRY_PASSWORD": "hunter2-xyz"})
    assert settings.mask("login with hunter2-xyz") == "login with ******"


def test_deploy_settings(tmp_path: Path) -> None:
    make(
        tmp_path,
        base=IMAGE + "ENVTASKS_HEALTHCHECK=/healthz?full=1\nENVTASKS_KEEP=3\n",
        prod="ENVTASKS_PORTS=127.0.0.1:8080:80, 9000:9000/udp, :7000\nENVTASKS_NAME=web\n"
        "ENVTASKS_DOCKER_HOST=unix:///run/a.sock, ssh://deploy@h2:22\n",
    )
    deploy = load_settings(tmp_path, "prod", {}).deploy
    assert deploy.name == "web" and deploy.keep == 3 and deploy.health.path == "/healthz?full=1"
    assert [str(p) for p in deploy.ports] == ["127.0.0.1:8080:80", "9000:9000/udp", ":7000"]
    assert deploy.docker_hosts == ("unix:///run/a.sock", "ssh://deploy@h2:22")
    assert deploy.health_timeout == 30 and deploy.health_grace == 5


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ENVTASKS_PORTS=8080", "ENVTASKS_PORTS item '8080' is invalid"),
        ("ENVTASKS_PORTS=99999:80", "between 1 and 65535"),
        ("ENVTASKS_PORTS=300.1.1.1:80:80", "not an IP address"),
        ("ENVTASKS_HEALTHCHECK=healthz", "must be an HTTP path"),
        ("ENVTASKS_HEALTHCHECK=cmd:", "needs a command"),
        ("ENVTASKS_HEALTH_TIMEOUT=soon", "must be a number of seconds"),
        ("ENVTASKS_HEALTH_TIMEOUT=0", "from 1 to 3600"),
        ("ENVTASKS_KEEP=2.5", "must be a whole number"),
        ("ENVTASKS_KEEP=0", "from 1 to 100"),
        ("ENVTASKS_NAME=Bad Name", "ENVTASKS_NAME"),
        ("ENVTASKS_DOCKER_HOST=http://x", "ENVTASKS_DOCKER_HOST item"),
    ],
)
def test_invalid_deploy_settings(tmp_path: Path, line: str, fragment: str) -> None:
    make(tmp_path, base=IMAGE, prod=line + "\n")
    with pytest.raises(EnvtasksError, match=fragment.replace("?", r"\?")):
        load_settings(tmp_path, "prod", {})


def test_http_health_needs_a_port_only_for_an_env(tmp_path: Path) -> None:
    make(tmp_path, base=IMAGE + "ENVTASKS_HEALTHCHECK=/healthz\n", prod="")
    assert load_settings(tmp_path, None, {}).deploy.health.path == "/healthz"
    with pytest.raises(EnvtasksError, match="publishes none"):
        load_settings(tmp_path, "prod", {})

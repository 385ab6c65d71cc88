"""envtasks run as users run it (a subprocess of invoke), with no engine needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import Project, assert_one_line_error

DEAD_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def test_dry_build_push_prints_cli_lines_and_contacts_nothing(project: Project) -> None:
    project.write(
        "envs/base.env", f"ENVTASKS_IMAGE={project.image}\nENVTASKS_REGISTRY_USERNAME=ci\n"
    )
    sha = project.git("rev-parse", "HEAD")[:12]
    done = project.invoke(
        "--dry", "build", "push", env={**DEAD_ENGINE, "ENVTASKS_REGISTRY_PASSWORD": "reg-pw-123"}
    )
    assert done.code == 0, done.text
    lines = done.out.splitlines()
    # The env file changed after the commit, so the version carries a hash of that change.
    assert lines[0].startswith(f"docker build --file Dockerfile --tag {project.image}:{sha}-dirty-")
    version = lines[0].split(f"{project.image}:")[1].split()[0]
    assert f"--label org.opencontainers.image.version={version}" in lines[0]
    assert lines[1:] == [
        "docker login localhost:5000 --username ci --password-stdin",
        f"docker image push {project.image}:{version}",
    ]
    assert "reg-pw-123" not in done.text


def test_build_version_is_shared_with_push_in_one_run(project: Project) -> None:
    done = project.invoke("--dry", "build", "--version=rc-7", "push", env=DEAD_ENGINE)
    assert done.code == 0, done.text
    assert done.out.splitlines()[-1] == f"docker image push {project.image}:rc-7"


def test_version_from_process_environment(project: Project) -> None:
    done = project.invoke("--dry", "push", env={**DEAD_ENGINE, "ENVTASKS_VERSION": "ci-42"})
    assert done.out.splitlines() == [f"docker image push {project.image}:ci-42"]


def test_dry_masks_secret_build_args(project: Project) -> None:
    project.write(
        "envs/base.env",
        f"ENVTASKS_IMAGE={project.image}\nENVTASKS_BUILD_ARGS=NPM_TOKEN=npm-tok-9\n",
    )
    done = project.invoke("--dry", "build", "--version=v1", env=DEAD_ENGINE)
    assert done.code == 0, done.text
    assert "'NPM_TOKEN=******'" in done.out and "npm-tok-9" not in done.text


def test_config_shows_layers_and_masks(project: Project) -> None:
    project.write("envs/prod.local.env", "DB_PASSWORD=local-pw-555\n")
    done = project.invoke("config", "--env=prod")
    assert done.code == 0, done.text
    assert "DB_PASSWORD=******" in done.out and "# envs/prod.local.env:1" in done.out
    assert "GREETING=hi from prod" in done.out and "# envs/prod.env:1" in done.out
    assert "local-pw-555" not in done.text


def test_config_json(project: Project) -> None:
    import json

    done = project.invoke("config", "--env=prod", "--json", env={"GREETING": "from-ci"})
    data = json.loads(done.out)
    app = {row["key"]: row for row in data["app"]}
    assert app["GREETING"] == {
        "key": "GREETING",
        "value": "from-ci",
        "origin": "process environment",
        "secret": False,
    }
    assert app["DB_PASSWORD"]["value"] == "******"
    assert data["env"] == "prod"


def test_unknown_env_is_one_line(project: Project) -> None:
    assert_one_line_error(
        project.invoke("config", "--env=staging"), "unknown env 'staging'", "dev, prod"
    )


def test_bad_env_name(project: Project) -> None:
    assert_one_line_error(project.invoke("build", "--env=../x"), "invalid env name")


def test_malformed_file_is_one_line(project: Project) -> None:
    project.write("envs/dev.env", "OK=1\nthis is not valid\n")
    assert_one_line_error(project.invoke("config", "--env=dev"), "envs/dev.env line 2")


def test_missing_image_setting(project: Project) -> None:
    project.write("envs/base.env", "GREETING=x\n")
    assert_one_line_error(project.invoke("--dry", "build"), "ENVTASKS_IMAGE is not set")


def test_invalid_version(project: Project) -> None:
    assert_one_line_error(
        project.invoke("--dry", "build", "--version=a b"), "not a valid Docker tag"
    )


def test_not_a_git_repo(project: Project) -> None:
    subprocess.run(["rm", "-rf", str(project.root / ".git")], check=True)
    assert_one_line_error(project.invoke("--dry", "build"), "--version=V")


def test_engine_not_reachable_is_one_line(project: Project) -> None:
    done = project.invoke("build", "--version=v1", env=DEAD_ENGINE)
    assert_one_line_error(
        done, "unix:///nonexistent/docker.sock is not reachable (No such file or directory)"
    )
    refused = project.invoke("build", "--version=v1", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert_one_line_error(refused, "tcp://127.0.0.1:1 is not reachable (Connection refused)")


def test_tag_needs_tag(project: Project) -> None:
    assert_one_line_error(project.invoke("tag"), "--tag=T")


def test_console_script_uses_current_folder(project: Project) -> None:
    (project.root / "tasks.py").unlink()
    script = Path(sys.executable).parent / "envtasks"
    assert script.is_file(), "the envtasks console script is installed beside python"
    done = subprocess.run(
        [str(script), "--dry", "push", "--version=v9"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**DEAD_ENGINE, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"docker image push {project.image}:v9"]


def test_user_tasks_py_can_extend(project: Project) -> None:
    project.write(
        "tasks.py",
        """
        from invoke import task
        from envtasks import ns

        @task
        def hello(c):
            print("hello from the project")

        ns.add_task(hello)
        """,
    )
    done = project.invoke("--list")
    assert "hello" in done.out and "build" in done.out and "push" in done.out

"""The hostile and broken input corpus (tests/hostile/cases.json), run as users run envtasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, assert_one_line_error

CORPUS = json.loads((Path(__file__).parent / "hostile/cases.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = CORPUS["cases"]


def engine_state(client: Any) -> tuple[list[str], list[str]]:
    containers = sorted(c["Id"] for c in client.api.containers(all=True))
    images = sorted(i["Id"] for i in client.api.images(all=True))
    return containers, images


def test_corpus_is_big_and_unique() -> None:
    assert len(CASES) >= 60
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.engine
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_input(
    case: dict[str, Any], tmp_path: Path, docker_client: Any, request: pytest.FixtureRequest
) -> None:
    request.node.add_marker(pytest.mark.contract(f"hostile input: {case['kind']}"))
    root = tmp_path / "proj"
    project = Project(root, "")
    project.write("tasks.py", "from envtasks import ns\n")
    project.write("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")
    for name, text in case["files"].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    for name, values in case.get("raw_files", {}).items():
        (root / name).write_bytes(bytes(values))
    before = engine_state(docker_client)
    done = project.invoke(*case["args"], env=case.get("env"))
    assert_one_line_error(done, *case["expect"])
    assert engine_state(docker_client) == before, "nothing changes on the engine"
    for secret in ("p4ss-unterminated", "abc"):
        if secret in json.dumps(case["files"]) and "PASSWORD" in json.dumps(case["files"]):
            assert secret not in done.text


# busybox has no printenv: read the variable named in the query (the test's own key names).
PRINTENV_CGI = (
    '#!/bin/sh\necho "Content-Type: application/octet-stream"\necho\n'
    'eval "value=\\${$QUERY_STRING}"\nprintf "%s\\n" "$value"\n'
)
# (line in envs/prod.env, the exact value the app must see)
ACCEPTED = {
    "CMD_SUBST": ("CMD_SUBST=$(touch /tmp/envtasks-pwned)", "$(touch /tmp/envtasks-pwned)"),
    "BACKTICKS": ("BACKTICKS=`touch /tmp/envtasks-pwned`", "`touch /tmp/envtasks-pwned`"),
    "SEMICOLON": ("SEMICOLON='a; touch /tmp/envtasks-pwned; b'", "a; touch /tmp/envtasks-pwned; b"),
    "PIPES": (
        "PIPES='x | y && z || w > /tmp/envtasks-pwned'",
        "x | y && z || w > /tmp/envtasks-pwned",
    ),
    "QUOTES": ('QUOTES="it\'s \\"quoted\\""', 'it\'s "quoted"'),
    "NEWLINES": ('NEWLINES="line one\\nline two\\n"', "line one\nline two\n"),
    "DOLLAR_SECRET": ("DOLLAR_SECRET='pa$$w0rd${HOME}'", "pa$$w0rd${HOME}"),
    "UNICODE": ("UNICODE=grüße ✓ 日本", "grüße ✓ 日本"),
    "LONG": ("LONG=" + "z" * 10000, "z" * 10000),
    "GLOB": ("GLOB=*", "*"),
}


@pytest.mark.engine
@pytest.mark.contract("hostile input: values reach the container byte for byte")
def test_metacharacters_reach_the_container_byte_for_byte(app: Any) -> None:
    import urllib.parse
    import urllib.request

    app.project.write("www/cgi-bin/printenv", PRINTENV_CGI)
    (app.project.root / "www/cgi-bin/printenv").chmod(0o755)
    app.project.write(
        "envs/prod.env",
        f"ENVTASKS_PORTS=127.0.0.1:{app.ports['prod']}:8080\n"
        + "\n".join(line for line, _ in ACCEPTED.values())
        + "\n",
    )
    marker = Path("/tmp/envtasks-pwned")
    marker.unlink(missing_ok=True)
    app.release("v1")
    done = app.invoke("deploy", "--env=prod", "--version=v1")
    assert done.code == 0, done.text
    for key, (_, expected) in ACCEPTED.items():
        url = f"http://127.0.0.1:{app.ports['prod']}/cgi-bin/printenv?{urllib.parse.quote(key)}"
        with urllib.request.urlopen(url, timeout=3) as reply:
            assert reply.read() == expected.encode() + b"\n", key
    assert not marker.exists(), "no value was run by a shell on this machine"
    container = app.docker.containers.get(f"{app.name}-prod-v1")
    assert container.exec_run(["/bin/busybox", "test", "-e", str(marker)]).exit_code != 0

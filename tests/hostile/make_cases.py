"""Writes cases.json, the hostile input corpus: python tests/hostile/make_cases.py"""

import json
from pathlib import Path

IMG = "ENVTASKS_IMAGE=localhost:5000/hostile\n"
PORTS = "ENVTASKS_PORTS=127.0.0.1:18999:8080\n"
D = ["deploy", "--env=prod"]
cases = []


def case(id, kind, expect, prod=None, base=IMG, args=D, env=None, files=None, raw=None):
    f = {"envs/base.env": base}
    if prod is not None:
        f["envs/prod.env"] = prod
    f.update(files or {})
    c = {"id": id, "kind": kind, "files": f, "args": args, "expect": expect}
    if env:
        c["env"] = env
    if raw:
        c["raw_files"] = raw  # name -> list of byte values (for BOM, NUL, bad UTF-8)
    cases.append(c)


# malformed lines
case(
    "bare-text-line",
    "malformed line",
    ["envs/prod.env line 2", "cannot parse"],
    prod="GOOD=1\nthis is not valid\n",
)
case("equals-without-key", "malformed line", ["envs/prod.env line 1"], prod="=value\n")
case("key-with-dash", "malformed line", ["envs/prod.env line 1", "K-EY"], prod="K-EY=1\n")
case("key-starting-with-digit", "malformed line", ["envs/prod.env line 1", "1KEY"], prod="1KEY=x\n")
case(
    "unterminated-double-quote",
    "unterminated quote",
    ["envs/prod.env line 2"],
    prod='A=1\nB="never closed\n',
)
case(
    "unterminated-single-quote",
    "unterminated quote",
    ["envs/prod.env line 1"],
    prod="SECRET_KEY='abc\n",
)
case(
    "unterminated-quote-in-base",
    "unterminated quote",
    ["envs/base.env line 2"],
    base=IMG + 'X="open\n',
    prod="",
)
case(
    "unterminated-quote-hides-secret",
    "unterminated quote",
    ["envs/prod.env line 1", "DB_PASSWORD"],
    prod='DB_PASSWORD="p4ss-unterminated\n',
)
case("space-in-key", "malformed line", ["envs/prod.env line 1"], prod="MY KEY=1\n")
case(
    "bare-key-unset",
    "malformed line",
    ["envs/prod.env line 1", "FROM_HOST has no value"],
    prod="FROM_HOST\n",
)
# CRLF and BOM
case(
    "crlf-bad-line-3",
    "CRLF and BOM files",
    ["envs/prod.env line 3"],
    prod="A=1\r\nB=2\r\nnot valid\r\n",
)
case("crlf-unterminated", "CRLF and BOM files", ["envs/prod.env line 2"], prod='A=1\r\nB="x\r\n')
case(
    "bom-bad-line",
    "CRLF and BOM files",
    ["envs/prod.env line 2"],
    raw={"envs/prod.env": list(b"\xef\xbb\xbfA=1\nbad line\n")},
)
case(
    "bom-duplicate",
    "CRLF and BOM files",
    ["envs/prod.env line 2", "already set on line 1"],
    raw={"envs/prod.env": list(b"\xef\xbb\xbfA=1\r\nA=2\r\n")},
)
case(
    "invalid-utf8",
    "CRLF and BOM files",
    ["envs/prod.env", "not valid UTF-8"],
    raw={"envs/prod.env": list(b"A=\xff\xfe\n")},
)
case(
    "nul-byte",
    "values with newlines, metacharacters, long values",
    ["envs/prod.env line 2", "NUL"],
    raw={"envs/prod.env": list(b'A="x\\x00y"\nB=a\x00b\n')},
)
# duplicate keys
case(
    "duplicate-app-key",
    "duplicate keys",
    ["envs/prod.env line 3", "GREETING is already set on line 1"],
    prod="GREETING=a\nOTHER=1\nGREETING=b\n",
)
case(
    "duplicate-setting",
    "duplicate keys",
    ["envs/base.env line 2", "ENVTASKS_IMAGE"],
    base=IMG + IMG,
    prod="",
)
case(
    "duplicate-in-local",
    "duplicate keys",
    ["envs/prod.local.env line 2"],
    prod="",
    files={"envs/prod.local.env": "PW_SECRET=a\nPW_SECRET=b\n"},
)
# interpolation
case(
    "missing-var",
    "missing and recursive ${VAR}",
    ["DB_HOST", "envs/prod.env"],
    prod="URL=postgres://${DB_HOST}/db\n",
)
case(
    "missing-var-in-setting",
    "missing and recursive ${VAR}",
    ["REGISTRY_HOST", "envs/base.env"],
    base="ENVTASKS_IMAGE=${REGISTRY_HOST}/shop\n",
    prod="",
)
case(
    "missing-var-in-local",
    "missing and recursive ${VAR}",
    ["NOPE", "envs/prod.local.env"],
    prod="",
    files={"envs/prod.local.env": "A=${NOPE}\n"},
)
case(
    "self-reference-unset",
    "missing and recursive ${VAR}",
    ["LOOP uses ${LOOP}"],
    prod="LOOP=${LOOP}\n",
)
case("two-cycle", "missing and recursive ${VAR}", ["refers to itself"], prod="A=${B}\nB=${A}\n")
case(
    "three-cycle",
    "missing and recursive ${VAR}",
    ["refers to itself"],
    prod="A=${B}\nB=${C}\nC=${A}x\n",
)
case(
    "cycle-across-files",
    "missing and recursive ${VAR}",
    ["refers to itself"],
    base=IMG + "A=${B}\n",
    prod="B=${A}\n",
)
# env names
for i, name in enumerate(
    ["../x", "..", "a/b", "pr od", "Prod", "prød", "-x", "x.y", "/etc/passwd", "a\\b"]
):
    case(
        f"env-name-{i}",
        "env names with .., /, spaces, uppercase, unicode",
        ["invalid env name"],
        prod="",
        args=["deploy", f"--env={name}"],
    )
case(
    "env-name-empty",
    "env names with .., /, spaces, uppercase, unicode",
    ["needs --env=E"],
    prod="",
    args=["deploy", "--env="],
)
case(
    "env-unknown",
    "env names with .., /, spaces, uppercase, unicode",
    ["unknown env 'staging'", "prod"],
    prod="",
    args=["deploy", "--env=staging"],
)
# unknown settings
case(
    "unknown-setting-typo",
    "unknown ENVTASKS_* keys",
    ["ENVTASKS_HEALTCHECK", "did you mean ENVTASKS_HEALTHCHECK?", "envs/prod.env line 1"],
    prod="ENVTASKS_HEALTCHECK=/h\n",
)
case(
    "unknown-setting-process",
    "unknown ENVTASKS_* keys",
    ["ENVTASKS_REGISTRY_PASWORD", "process environment"],
    prod="",
    env={"ENVTASKS_REGISTRY_PASWORD": "x"},
)
case(
    "unknown-setting-far",
    "unknown ENVTASKS_* keys",
    ["unknown setting ENVTASKS_FROBNICATE", "envs/prod.env line 1"],
    prod="ENVTASKS_FROBNICATE=1\n",
)
case(
    "version-in-file",
    "unknown ENVTASKS_* keys",
    ["ENVTASKS_VERSION", "process environment"],
    prod="ENVTASKS_VERSION=1\n",
)
# ports
for i, (spec, frag) in enumerate(
    [
        ("8080", "is invalid"),
        ("99999:80", "between 1 and 65535"),
        ("a:b", "is invalid"),
        ("300.1.1.1:80:80", "not an IP address"),
        ("80:80/sctp", "is invalid"),
        ("0:80", "between 1 and 65535"),
        ("127.0.0.1:80:80:80", "is invalid"),
    ]
):
    case(
        f"port-{i}",
        "invalid ports",
        ["ENVTASKS_PORTS", frag, "envs/prod.env:1"],
        prod=f"ENVTASKS_PORTS={spec}\n",
    )
# tags
for i, version in enumerate(["a b", ".x", "-x", "x" * 129, "v1;rm", "ü"]):
    case(
        f"tag-{i}",
        "invalid tags",
        ["not a valid Docker tag"],
        prod=PORTS,
        args=["deploy", "--env=prod", f"--version={version}"],
    )
case(
    "tag-from-process",
    "invalid tags",
    ["ENVTASKS_VERSION", "not a valid Docker tag"],
    prod=PORTS,
    env={"ENVTASKS_VERSION": "$(id)"},
)
# image names
for i, (image, frag) in enumerate(
    [
        ("shop", "registry host"),
        ("localhost:5000/shop:1.0", "without tag"),
        ("localhost:5000/shop@sha256:00", "without tag"),
        ("localhost:5000/Shop", "not a valid image repository"),
        ("", "ENVTASKS_IMAGE is not set"),
        ("localhost:5000/shop;rm -rf", "not a valid image repository"),
        ("localhost:5000/", "not a valid image"),
    ]
):
    case(f"image-{i}", "invalid image names", [frag], base=f"ENVTASKS_IMAGE={image}\n", prod="")
# health
for i, (value, frag) in enumerate(
    [
        ("healthz", "must be an HTTP path"),
        ("/a b", "must be an HTTP path"),
        ("cmd:", "needs a command"),
        ('cmd:"unterminated', "ENVTASKS_HEALTHCHECK command"),
        ("http://x/healthz", "must be an HTTP path"),
    ]
):
    case(
        f"health-{i}",
        "invalid health paths",
        ["ENVTASKS_HEALTHCHECK", frag],
        prod=PORTS + f"ENVTASKS_HEALTHCHECK={value}\n",
    )
case(
    "health-path-without-port",
    "invalid health paths",
    ["publishes none"],
    prod="ENVTASKS_HEALTHCHECK=/healthz\n",
)
# timeouts
for i, value in enumerate(["soon", "0", "-1", "99999", "nan", "inf"]):
    case(
        f"timeout-{i}",
        "invalid timeouts and keep counts",
        ["ENVTASKS_HEALTH_TIMEOUT", "number of seconds"],
        prod=f"ENVTASKS_HEALTH_TIMEOUT={value}\n",
    )
case(
    "grace-negative",
    "invalid timeouts and keep counts",
    ["ENVTASKS_HEALTH_GRACE"],
    prod="ENVTASKS_HEALTH_GRACE=-5\n",
)
for i, value in enumerate(["0", "2.5", "many", "1000"]):
    case(
        f"keep-{i}",
        "invalid timeouts and keep counts",
        ["ENVTASKS_KEEP", "whole number"],
        prod=f"ENVTASKS_KEEP={value}\n",
    )
case(
    "replicas-without-swarm",
    "invalid timeouts and keep counts",
    ["ENVTASKS_REPLICAS", "needs ENVTASKS_TARGET=swarm"],
    prod="ENVTASKS_REPLICAS=3\n",
)
case(
    "target-unknown",
    "invalid settings",
    ["ENVTASKS_TARGET", "container or swarm"],
    prod="ENVTASKS_TARGET=k8s\n",
)
case(
    "docker-host-http",
    "invalid settings",
    ["ENVTASKS_DOCKER_HOST"],
    prod="ENVTASKS_DOCKER_HOST=http://evil\n",
)
case(
    "docker-host-injection",
    "invalid settings",
    ["ENVTASKS_DOCKER_HOST"],
    prod="ENVTASKS_DOCKER_HOST=ssh://host;rm -rf /\n",
)
case("name-invalid", "invalid settings", ["ENVTASKS_NAME"], prod="ENVTASKS_NAME=../../x\n")
case(
    "build-args-invalid",
    "invalid settings",
    ["ENVTASKS_BUILD_ARGS"],
    base=IMG + "ENVTASKS_BUILD_ARGS=$(id)\n",
    prod="",
    args=["build", "--version=v1"],
)
case(
    "secrets-as-env-invalid",
    "invalid settings",
    ["ENVTASKS_SECRETS_AS_ENV"],
    prod="ENVTASKS_SECRETS_AS_ENV=maybe\n",
)
# values
case(
    "value-too-long",
    "values with newlines, metacharacters, long values",
    ["envs/prod.env line 1", "BIG", "65536"],
    prod="BIG=" + "x" * 70000 + "\n",
)
# paths
case(
    "dockerfile-outside",
    "Dockerfile or context outside the project",
    ["ENVTASKS_DOCKERFILE", "outside the project"],
    base=IMG + "ENVTASKS_DOCKERFILE=../Dockerfile\n",
    prod="",
    args=["build", "--version=v1"],
)
case(
    "dockerfile-absolute",
    "Dockerfile or context outside the project",
    ["ENVTASKS_DOCKERFILE", "outside the project"],
    base=IMG + "ENVTASKS_DOCKERFILE=/etc/passwd\n",
    prod="",
    args=["build", "--version=v1"],
)
case(
    "context-outside",
    "Dockerfile or context outside the project",
    ["ENVTASKS_CONTEXT", "outside the project"],
    base=IMG + "ENVTASKS_CONTEXT=../..\n",
    prod="",
    args=["build", "--version=v1"],
)
case(
    "dockerfile-missing",
    "Dockerfile or context outside the project",
    ["no Dockerfile at"],
    base=IMG + "ENVTASKS_DOCKERFILE=nope/Dockerfile\n",
    prod="",
    args=["build", "--version=v1"],
)
ABOUT = (
    "Hostile and broken input: each case must end in one line naming the file, line or key, "
    "exit non-zero, with no traceback and nothing changed on the engine."
)
with open(Path(__file__).with_name("cases.json"), "w") as out:
    json.dump({"about": ABOUT, "cases": cases}, out, indent=1, ensure_ascii=False)
print(len(cases))

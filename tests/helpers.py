"""Helpers for envtasks' tests: temp projects, running invoke as a user would, registry reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Project:
    root: Path
    image: str

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def invoke(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Done:
        """Run ``invoke ARGS`` in the project as a user would, in a fresh process."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVTASKS_")}
        environ.update(env or {})
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
        return self.git("rev-parse", "HEAD")


def busybox_dockerfile(extra: str = "") -> str:
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "COPY www /www\n"
        + extra
        + 'CMD ["/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/www"]\n'
    )


def registry_tags(registry: str, repository: str) -> list[str]:
    host = registry.replace("localhost", "127.0.0.1")
    with urllib.request.urlopen(f"http://{host}/v2/{repository}/tags/list", timeout=10) as reply:
        return list(json.load(reply).get("tags") or [])


def registry_digest(registry: str, repository: str, tag: str) -> str:
    host = registry.replace("localhost", "127.0.0.1")
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(reply.headers["Docker-Content-Digest"])


def assert_one_line_error(done: Done, *fragments: str) -> None:
    assert done.code != 0, done.text
    assert "Traceback" not in done.text, done.text
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert len(lines) == 1, done.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def repo_path(image: str) -> str:
    return image.split("/", 1)[1]

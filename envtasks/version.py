"""Which version (image tag) a run builds, pushes or deploys."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from .errors import EnvtasksError

DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
HOW_TO_GIVE = "give one with --version=V or the ENVTASKS_VERSION environment variable"


def validate_tag(tag: str, what: str = "version") -> str:
    if not DOCKER_TAG.fullmatch(tag):
        raise EnvtasksError(
            f"{what} {tag[:80]!r} is not a valid Docker tag: use up to 128 letters, digits, "
            "'_', '.' and '-', not starting with '.' or '-'"
        )
    return tag


def resolve_version(explicit: str | None, process_version: str, root: Path) -> str:
    """``--version`` > ``ENVTASKS_VERSION`` > the git commit (with a hash of uncommitted changes)."""
    if explicit:
        return validate_tag(explicit)
    if process_version:
        return validate_tag(process_version, "ENVTASKS_VERSION")
    return git_version(root)


def _git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise EnvtasksError(
            f"git is not installed, so no version can be computed; {HOW_TO_GIVE}"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip() or "git failed").splitlines()[0]
        raise EnvtasksError(
            f"cannot compute a version from git in {root} ({reason}); {HOW_TO_GIVE}"
        )
    return done.stdout


def git_revision(root: Path) -> str | None:
    """The full commit SHA, or None outside a git work tree or before the first commit."""
    try:
        return _git(root, "rev-parse", "--verify", "HEAD").decode().strip()
    except EnvtasksError:
        return None


def git_source(root: Path) -> str | None:
    """The origin remote's URL without credentials, for the image's source label."""
    try:
        url = _git(root, "config", "--get", "remote.origin.url").decode().strip()
    except EnvtasksError:
        return None
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", url) or None


def git_tracked(root: Path, folder: str) -> set[str]:
    """Paths (relative to root) that git tracks under ``folder``; empty outside a git tree."""
    try:
        listed = _git(root, "ls-files", "-z", "--", folder)
    except EnvtasksError:
        return set()
    return {name.decode(errors="replace") for name in listed.split(b"\0") if name}


def git_version(root: Path) -> str:
    inside = _git(root, "rev-parse", "--is-inside-work-tree").decode().strip()
    if inside != "true":
        raise EnvtasksError(f"{root} is not a git work tree; {HOW_TO_GIVE}")
    revision = git_revision(root)
    if revision is None:
        raise EnvtasksError(f"the git repository in {root} has no commit yet; {HOW_TO_GIVE}")
    short = revision[:12]
    changes = _uncommitted_changes(root)
    if not changes:
        return short
    return f"{short}-dirty-{hashlib.sha256(changes).hexdigest()[:8]}"


def _uncommitted_changes(root: Path) -> bytes:
    """Every uncommitted change, tracked or untracked, as bytes; empty for a clean tree."""
    digest = hashlib.sha256()
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if not status:
        return b""
    digest.update(_git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    for name in sorted(n for n in untracked.split(b"\0") if n):
        digest.update(b"\0untracked\0" + name + b"\0")
        path = root / name.decode(errors="surrogateescape")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.digest()

"""Version computation against real temp git repositories."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from envtasks.errors import EnvtasksError
from envtasks.version import git_source, git_version, resolve_version, validate_tag


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_clean_tree_is_twelve_char_sha(repo: Path) -> None:
    assert git_version(repo) == git(repo, "rev-parse", "HEAD")[:12]


def test_dirty_tree_hashes_the_changes(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")[:12]
    (repo / "a.txt").write_text("two\n")
    first = git_version(repo)
    assert re.fullmatch(rf"{sha}-dirty-[0-9a-f]{{8}}", first)
    assert git_version(repo) == first, "the same changes give the same tag"
    (repo / "a.txt").write_text("three\n")
    second = git_version(repo)
    assert second != first and second.startswith(f"{sha}-dirty-")


def test_untracked_files_count_as_changes(repo: Path) -> None:
    (repo / "new.txt").write_text("x\n")
    first = git_version(repo)
    assert "-dirty-" in first
    (repo / "new.txt").write_text("y\n")
    assert git_version(repo) != first


def test_ignored_files_do_not(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.local.env\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ignore")
    (repo / "prod.local.env").write_text("SECRET=x\n")
    assert "-dirty-" not in git_version(repo)


def test_precedence(repo: Path) -> None:
    assert resolve_version("1.2.3", "from-env", repo) == "1.2.3"
    assert resolve_version(None, "from-env", repo) == "from-env"
    assert resolve_version(None, "", repo) == git_version(repo)


def test_not_a_git_repo_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(EnvtasksError) as err:
        resolve_version(None, "", tmp_path)
    assert "--version=V" in err.value.message and "ENVTASKS_VERSION" in err.value.message


def test_repo_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(EnvtasksError, match="no commit yet"):
        git_version(tmp_path)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a b", "a/b", "x" * 129, "v1;rm", "é"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(EnvtasksError, match="not a valid Docker tag"):
        validate_tag(tag)


def test_invalid_env_version(repo: Path) -> None:
    with pytest.raises(EnvtasksError, match="ENVTASKS_VERSION"):
        resolve_version(None, "bad tag", repo)


def test_source_strips_credentials(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://user:tok@git.example.com/team/shop.git")
    assert git_source(repo) == "https://git.example.com/team/shop.git"

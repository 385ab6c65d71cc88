"""Tasks for the image half of the job: build once, tag, push."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import Collection, Context

from .errors import EnvtasksError
from .plan import image_labels, needs_buildkit, plan_build, plan_push, plan_tag
from .runner import envtask, open_run
from .version import git_revision, git_source, validate_tag

ENV_HELP = "environment whose env files to read (default: envs/base.env only)"
VERSION_HELP = "image tag (default: ENVTASKS_VERSION, else the git commit)"


@envtask(
    help={"version": VERSION_HELP, "no-cache": "build without the layer cache", "env": ENV_HELP}
)
def build(c: Context, version: str = "", no_cache: bool = False, env: str = "") -> None:
    """Build <ENVTASKS_IMAGE>:<version>, environment-agnostic, with OCI labels."""
    with open_run(c, env or None) as run:
        tag = run.version(version or None)
        dockerfile = run.settings.dockerfile
        try:
            dockerfile_text = dockerfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            raise EnvtasksError(
                f"no Dockerfile at {dockerfile}; set ENVTASKS_DOCKERFILE in envs/base.env"
            ) from None
        created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        labels = image_labels(tag, git_revision(run.root), created, git_source(run.root))
        run.execute(
            plan_build(run.settings, tag, labels, no_cache, needs_buildkit(dockerfile_text))
        )


@envtask(
    help={"tag": "the extra tag to add, e.g. latest", "version": VERSION_HELP, "env": ENV_HELP}
)
def tag(c: Context, tag: str = "", version: str = "", env: str = "") -> None:
    """Add tag T to <ENVTASKS_IMAGE>:<version>."""
    if not tag:
        raise EnvtasksError("tag needs --tag=T, e.g. invoke tag --tag=latest")
    validate_tag(tag, "tag")
    with open_run(c, env or None) as run:
        run.execute(plan_tag(run.settings, run.version(version or None), tag))


@envtask(help={"version": VERSION_HELP, "tag": "also push this extra tag", "env": ENV_HELP})
def push(c: Context, version: str = "", tag: str = "", env: str = "") -> None:
    """Push <ENVTASKS_IMAGE>:<version> (and --tag) and print its registry digest."""
    if tag:
        validate_tag(tag, "tag")
    with open_run(c, env or None) as run:
        run.execute(plan_push(run.settings, run.version(version or None), tag or None))


ns = Collection("image", build, tag, push)

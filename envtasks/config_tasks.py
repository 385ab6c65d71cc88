"""The ``config`` task: what an environment resolves to, secrets masked."""

from __future__ import annotations

import json
import sys

from invoke import Collection, Context

from .config import SETTING_DEFAULTS, Entry, Settings
from .runner import envtask, open_run
from .version import git_tracked


def describe(settings: Settings) -> dict[str, object]:
    """The resolved settings and application variables as plain data, secrets masked."""

    def rows(entries: tuple[Entry, ...]) -> list[dict[str, object]]:
        return [
            {"key": e.key, "value": e.shown, "origin": e.origin, "secret": e.secret}
            for e in entries
        ]

    given = {e.key for e in settings.settings}
    defaults = tuple(
        Entry(key, value, "default", False)
        for key, value in sorted(SETTING_DEFAULTS.items())
        if key not in given and value
    )
    return {
        "env": settings.env,
        "settings": rows(tuple(sorted((*settings.settings, *defaults), key=lambda e: e.key))),
        "app": rows(settings.app),
    }


def tracked_secret_warnings(settings: Settings) -> list[str]:
    """Secrets whose value sits in an env file that git tracks, where anyone with the repo reads it."""
    tracked = git_tracked(settings.root, "envs")
    warnings = []
    for entry in (*settings.settings, *settings.app):
        file = entry.origin.rsplit(":", 1)[0]
        if entry.secret and entry.value and file in tracked:
            local = (
                file.replace(".env", ".local.env")
                if file != "envs/base.env"
                else "envs/<env>.local.env"
            )
            warnings.append(
                f"{entry.key} is secret but its value is in {file}, which git tracks; "
                f"move it to {local} (git-ignored) or the process environment"
            )
    return warnings


def render_text(description: dict[str, object]) -> list[str]:
    lines = [f"env: {description['env'] or '(base.env only)'}"]
    for section in ("settings", "app"):
        lines.append(f"{section}:")
        entries = description[section]
        assert isinstance(entries, list)
        width = max((len(f"{e['key']}={e['value']}") for e in entries), default=0)
        lines.extend(
            f"  {e['key']}={e['value']}".ljust(width + 4) + f"# {e['origin']}" for e in entries
        )
    return lines


@envtask(help={"env": "environment to show (default: envs/base.env only)", "json": "print JSON"})
def config(c: Context, env: str = "", json_: bool = False) -> None:
    """Show the resolved settings and app variables, secrets masked, with where each came from."""
    with open_run(c, env or None) as run:
        for warning in tracked_secret_warnings(run.settings):
            print(f"envtasks: warning: {warning}", file=sys.stderr)
        description = describe(run.settings)
        if json_:
            run.say(json.dumps(description, indent=2))
        else:
            for line in render_text(description):
                run.say(line)


ns = Collection("config", config)

"""envtasks: composable Invoke tasks that build, push and deploy one image across environments.

A project's ``tasks.py`` can be the single line ``from envtasks import ns``.
"""

from __future__ import annotations

from invoke import Collection

from .startup import lasting_imports

with lasting_imports():
    from . import config_tasks, deploy, image, local_run
    from .errors import EnvtasksError

__all__ = ["EnvtasksError", "make_namespace", "ns"]

DEFAULTS = {"envtasks": {"root": None, "run_version": None}}


def make_namespace() -> Collection:
    """A fresh root collection of every envtasks task, with its configured defaults."""
    root = Collection()
    for module in (config_tasks, image, deploy, local_run):
        for task in module.ns.tasks.values():
            root.add_task(task)
    root.configure(DEFAULTS)
    return root


ns = make_namespace()

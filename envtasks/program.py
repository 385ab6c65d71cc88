"""The ``envtasks`` console script: the same tasks without a tasks.py."""

from __future__ import annotations

from importlib.metadata import version

from invoke import Program

from . import make_namespace


def main() -> None:
    Program(
        namespace=make_namespace(), name="envtasks", binary="envtasks", version=version("envtasks")
    ).run()

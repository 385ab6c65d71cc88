"""This repository's own tasks: envtasks' demo app uses envtasks as any project would."""

from envtasks import ns  # noqa: F401

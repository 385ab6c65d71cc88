"""Start-up cost: every task runs in a fresh, short process, so loading and exiting count.

A deploy of an app that starts at once spends more of its wall time starting Python and
loading invoke, docker-py and requests than talking to the engine; this module trims
what envtasks controls of that.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _LoadedOnFirstUse(types.ModuleType):
    """Stands in for a module until one of its attributes is read."""

    def __getattr__(self, attribute: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attribute)


def defer_import(name: str) -> None:
    """Later ``import name`` statements bind a stand-in that loads the module on first use."""
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _LoadedOnFirstUse(name)


@contextmanager
def lasting_imports() -> Iterator[None]:
    """Imports that live as long as the process, loaded without the cyclic collector.

    The collector would walk the thousands of objects they create while they load, and
    again at exit; pausing it while they load and then freezing them out of its view
    saves ~50 ms per task.
    """
    # docker-py imports paramiko (and cryptography, ~35 ms) only to name it in code for
    # ssh:// engines reached without the system ssh client; envtasks always uses that client.
    defer_import("paramiko")
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
    gc.freeze()

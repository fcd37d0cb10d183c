"""Modules loaded when first used, so a process pays for them only if it uses them.

A server must answer its health check soon after it starts (orchestrators restart one that is
slow, autoscalers wait for it), and a CLI command should not wait for code it never runs. A few
heavy dependencies are needed only once a process does a certain kind of work: aiohttp on the
first upstream call, the price table on the first call priced from it. `lazy_import` is
importlib's documented `LazyLoader` recipe: the module object exists at once, and its code runs
on the first attribute read, in whichever call needs it first.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """`name` as a module whose code runs on its first attribute access (at once if already loaded)."""
    if (loaded := sys.modules.get(name)) is not None:
        return loaded
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module

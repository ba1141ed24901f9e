"""Lazy public names for a package: `import pkg.config` stays light (no Numba, torch or onnxruntime)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(module __getattr__, __all__) that import `names[attr]` (a module path) on first access (PEP 562)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(names)

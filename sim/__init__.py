"""The virtual scanner: head phantoms, calibration targets, THz (FMCW) and visible rendering.

Public names, imported lazily so that `import sim.config` stays light (no numba):
Subject, Target (sim.scene), VirtualScanner, RasterDrive (sim.scanner), Population (sim.population).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Subject": "sim.scene", "Target": "sim.scene", "scene_from_json": "sim.scene",
    "VirtualScanner": "sim.scanner", "RasterDrive": "sim.scanner",
    "Population": "sim.population", "HeadShape": "sim.population",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

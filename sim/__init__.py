"""The virtual scanner: head phantoms, calibration targets, THz (FMCW) and visible rendering.

Public names, imported lazily so that `import sim.config` stays light (no numba):
Subject, Target (sim.scene), VirtualScanner, RasterDrive (sim.scanner), Population (sim.population).
"""
from __future__ import annotations

from thzcore.lazy import lazy_exports

_EXPORTS = {
    "Subject": "sim.scene", "Target": "sim.scene", "scene_from_json": "sim.scene",
    "VirtualScanner": "sim.scanner", "RasterDrive": "sim.scanner",
    "Population": "sim.population", "HeadShape": "sim.population",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)

"""processing: raw FMCW scans -> range-gated, de-warped, phase-corrected, averaged frames -> face ROIs.

Public names are imported lazily so `processing.calibration_model` and `processing.config` stay
free of Numba for the calibration store and the config loader.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FrameProcessor": "processing.processor", "ProcessedFrame": "processing.processor",
    "ProcessingStage": "processing.stage", "StageOutput": "processing.stage",
    "FaceLocator": "processing.roi", "RoiResult": "processing.roi", "extract_face_roi": "processing.roi",
    "ProcessingCalibration": "processing.calibration_model", "ProcessingConfig": "processing.config",
    "estimate_line_shift": "processing.line_phase", "read_recording": "processing.sources",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'processing' has no attribute {name!r}")

"""processing: raw FMCW scans -> range-gated, de-warped, phase-corrected, averaged frames -> face ROIs.

Public names are imported lazily so `processing.calibration_model` and `processing.config` stay
free of Numba for the calibration store and the config loader.
"""
from __future__ import annotations

from thzcore.lazy import lazy_exports

_LAZY = {
    "FrameProcessor": "processing.processor", "ProcessedFrame": "processing.processor",
    "ProcessingStage": "processing.stage", "StageOutput": "processing.stage",
    "FaceLocator": "processing.roi", "RoiResult": "processing.roi", "extract_face_roi": "processing.roi",
    "ProcessingCalibration": "processing.calibration_model", "ProcessingConfig": "processing.config",
    "estimate_line_shift": "processing.line_phase",
}
__getattr__, __all__ = lazy_exports(__name__, _LAZY)

"""inference: engines (TensorRT | ONNX Runtime) behind one interface, the gallery, the result stage.

Public names are imported lazily, so `inference.config` stays light for the config loader.
"""
from __future__ import annotations

from thzcore.lazy import lazy_exports

_LAZY = {
    "load_bundle": "inference.bundle", "ModelBundle": "inference.bundle", "BundleError": "inference.bundle",
    "Engine": "inference.engines.base", "make_engine": "inference.engines.choice", "choose_engine": "inference.engines.choice",
    "EngineUnavailable": "inference.engines.choice", "Gallery": "inference.gallery", "GalleryError": "inference.gallery",
    "ModelMismatchError": "inference.gallery", "InferenceStage": "inference.stage", "ResultMeta": "inference.results",
    "decode_result": "inference.results", "InferenceConfig": "inference.config",
}
__getattr__, __all__ = lazy_exports(__name__, _LAZY)

"""The `inference` config section: engine choice, model bundle, gallery, endpoints."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from thzcore.config import Section


class InferenceConfig(Section):
    engine: Literal["auto", "tensorrt", "onnxruntime"] = Field("auto", description="inference engine")
    bundle: str = Field("models/compact", description="model bundle directory (ONNX + manifest)")
    gallery: str = Field("gallery.sqlite", description="SQLite gallery of enrolled subjects")
    result_endpoint: str = Field("tcp://127.0.0.1:5558", description="ZMQ PUB endpoint of the `result` topic")

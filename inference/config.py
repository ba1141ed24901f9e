"""The `inference` config section: engine choice and tuning, model bundle, gallery, endpoints, decisions."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from thzcore import datadirs
from thzcore.config import Section


class InferenceConfig(Section):
    engine: Literal["auto", "tensorrt", "onnxruntime"] = Field(
        "auto", description="inference engine: auto = TensorRT when an NVIDIA GPU and tensorrt are present, "
                            "else ONNX Runtime on the CPU")
    bundle: str = Field("models/compact", description="model bundle directory (model.onnx + manifest.json)")
    gallery: str = Field("", description="SQLite gallery of enrolled subjects, created 0600 (empty: gallery.sqlite in "
                                        "the data directory, $THZ_DATA_DIR or the per-user one; thzcore.datadirs)")
    # ONNX Runtime on few cores (measured with `thz bench inference`, see docs/inference.md)
    intra_op_threads: int = Field(1, ge=0, le=64, description="ONNX Runtime intra-op threads (0 = ORT default)")
    allow_spinning: bool = Field(False, description="let ONNX Runtime worker threads spin-wait; off when Numba "
                                                    "processing shares the CPU")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimisation level")
    # TensorRT (GPU machines only)
    trt_precision: Literal["fp32", "fp16"] = Field("fp16", description="TensorRT engine precision "
                                                                       "(fp16 keeps the L2-normalise tail in fp32)")
    trt_cache_dir: str = Field("~/.cache/thz-face/tensorrt", description="directory of serialised TensorRT "
                                                                          "engines and the timing cache")
    max_batch: int = Field(8, ge=1, le=256, description="largest batch (TensorRT optimisation profile max)")
    # multi-scan fusion (inference/fusion.py, measured in docs/results.md "Protocols (v2 scanner)")
    fusion_scans: int = Field(1, ge=1, le=16, description="enrol, verify and identify on the fused embedding of up "
                                                         "to N consecutive ROIs of one subject and posture (1 = each "
                                                         "ROI alone)")
    fusion_weight: Literal["roi_quality", "uniform"] = Field(
        "roi_quality", description="weights of the fused ROIs: the face locator's quality (meta.roi.quality) or equal")
    fusion_max_gap_s: float = Field(5.0, gt=0, description="a ROI more than this after the previous one of its "
                                                           "scanner starts a new fusion run (s)")
    enroll_min_quality: float = Field(0.45, ge=0.0, le=1.0,
                                      description="a ROI whose face-locator quality (meta.roi.quality) is below "
                                                  "this is not enrolled: scan again (inference/quality.py)")
    # outputs and decisions
    reconstruction: bool = Field(False, description="compute the reconstruction and put it in results "
                                                    "(personal data: off unless asked for)")
    reconstruction_route: Literal["predicted", "soft", "graph"] = Field(
        "predicted", description="which posture expert reconstructs: predicted = only the argmax posture's "
                                 "expert runs on each ROI; soft = every expert, blended by the posture "
                                 "probabilities; graph = the bundle's graph as exported (every expert runs, "
                                 "the argmax one is kept: the reference, 4x the cost of predicted)")
    top_k: int = Field(3, ge=1, le=100, description="best identities reported per result")
    identify_threshold: float | None = Field(
        None, ge=0.0, le=2.0, description="open-set rejection distance for 1:N identification "
                                          "(cosine distance); None = the bundle's verification threshold")
    identify_threads: int = Field(1, ge=0, le=64, description="threads of the 1:N template search (BLAS for NumPy, "
                                                               "OpenMP for faiss; 0 = the library's default): "
                                                               "one, measured with `thz bench gallery`")
    faiss_min_templates: int | None = Field(
        None, ge=1, description="search with an exact faiss index (IndexFlatIP, faiss-cpu) from this many templates "
                                "on; None = always the NumPy matrix product (docs/inference.md, `thz bench gallery`)")
    stale_after_s: float = Field(10.0, gt=0, description="a ROI acquired longer ago than this is "
                                                         "dropped as stale (s); a scanner silent this long starts "
                                                         "afresh, so a restarted daemon may renumber its frames")
    max_frame_jump: int = Field(1000, ge=1, description="a ROI whose frame id is more than this ahead of the last "
                                                        "one of its scanner is dropped as malformed (one corrupt id "
                                                        "must not make every later frame stale)")
    # endpoints
    roi_endpoint: str = Field("tcp://127.0.0.1:5557", description="ZMQ SUB endpoint of the `roi` topic")
    result_endpoint: str = Field("tcp://127.0.0.1:5558", description="ZMQ PUB endpoint of the `result` topic")
    curve_secret_key_file: str = Field(
        "", description="ZMQ CURVE secret key file (zmq.auth format) of the result publisher; required to bind "
                        "a non-loopback endpoint")
    curve_clients_dir: str = Field("", description="directory of authorised client public keys (*.key) for CURVE")
    report_dir: str = Field("", description="where `thz run` writes its HTML reports (empty: reports/ in the data "
                                           "directory)")
    view_port: int = Field(8765, ge=0, le=65535, description="`thz run --view`: loopback HTTP port of the live "
                                                             "view (0 = any free port)")
    view_fault_after_s: float = Field(3.0, gt=0, description="live view: scanner shown in fault after this long "
                                                             "without a frame (s)")
    latency_target_ms: float = Field(100.0, gt=0, description="target of the p99 latency from scan complete to "
                                                              "result published (ms): the report and the run "
                                                              "summary judge the session against it")

    @property
    def gallery_path(self) -> Path:
        """The gallery file: `gallery` as given, else gallery.sqlite in the data directory."""
        return datadirs.resolve(self.gallery, datadirs.GALLERY)

    @property
    def report_root(self) -> Path:
        """The folder of `thz run`'s reports: `report_dir` as given, else reports/ in the data directory."""
        return datadirs.resolve(self.report_dir, datadirs.REPORTS)

    @model_validator(mode="after")
    def _endpoints(self) -> "InferenceConfig":
        for name in ("roi_endpoint", "result_endpoint"):
            ep = getattr(self, name)
            if not ep.startswith(("tcp://", "ipc://", "inproc://")):
                raise ValueError(f"inference.{name}={ep!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        if self.faiss_min_templates is not None and importlib.util.find_spec("faiss") is None:
            raise ValueError(f"inference.faiss_min_templates={self.faiss_min_templates} needs faiss-cpu, which is not "
                             "installed: `pip install faiss-cpu`, or remove the setting")
        return self

"""The `processing` config section: range gate, pixel rule, de-warp, line phase, averaging, ROI."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from thzcore.config import Section


class ProcessingConfig(Section):
    # --- range: beat signal -> one intensity per chirp
    gate_min_m: float = Field(5.75, gt=0, description="near edge of the range gate (m)")
    gate_max_m: float = Field(6.25, gt=0, description="far edge of the range gate (m)")
    window: Literal["hann", "hamming", "blackman", "rect"] = Field(
        "hann", description="window applied to each chirp's IF samples before the range transform")
    pixel_rule: Literal["peak", "sum"] = Field("peak", description="pixel = peak or summed power in the gate")
    # --- fast axis: chirp positions -> uniform samples
    position_source: Literal["feedback", "model"] = Field(
        "feedback", description="beam position per chirp from the recorded galvo feedback, or from the "
                                "commanded sinusoid (model) when no feedback is trusted")
    line_lag_s: float | None = Field(
        None, description="line lag L (s): the beam position of the chirp starting at t_c is the position "
                          "source read at t_c + L. None = derived: feedback_delay_s + T_c/2 for feedback (the "
                          "sensor reports late, the chirp integrates to its middle; = the simulator's "
                          "true_line_lag_s), T_c/2 - servo lag for the model. A calibration record overrides it")
    # --- frame
    frames_averaged: int = Field(3, ge=1, le=32, description="consecutive frames averaged into one output frame")
    averaging: Literal["sliding", "block"] = Field(
        "sliding", description="stage output: every frame averaged with the previous ones (sliding), or one "
                               "output per frames_averaged new frames (block)")
    output_scale: Literal["db", "linear"] = Field("db", description="frame intensity in dB (power) or linear power")
    power_floor: float = Field(1e-3, gt=0, description="power (ADC counts^2) added before dB so empty pixels stay finite")
    threads: int = Field(1, ge=0, le=256, description="Numba threads for the kernels: 1 = serial, 0 = all cores")
    # --- stage transport
    publish_endpoint: str = Field("tcp://127.0.0.1:5557", description="ZMQ PUB endpoint of the `frame` and "
                                  "`roi` topics (loopback only: ROIs are face images)")
    # --- face ROI
    roi_width_m: float = Field(0.26, gt=0, description="physical width of the face ROI box (m)")
    roi_height_m: float = Field(0.30, gt=0, description="physical height of the face ROI box (m)")
    roi_size: int = Field(64, ge=8, description="ROI side in pixels after bicubic resize")
    roi_head_top_margin_m: float = Field(
        0.02, ge=0, description="space kept above the top of the head inside the ROI box (m)")
    roi_glint_merge_m: float = Field(
        0.04, gt=0, le=0.2, description="glints closer than about twice this merge into one face region (m)")
    roi_glint_crown_offset_m: float = Field(
        0.06, ge=0, le=0.2, description="crown above the top glint when only glints are seen (forehead height, m)")
    roi_threshold_db: float = Field(
        6.0, gt=0, description="a pixel is head when brighter than the frame's background level by this (dB power)")
    roi_min_quality: float = Field(
        0.25, ge=0, le=1, description="below this quality score the ROI is reported as 'no face'")
    roi_norm_low_pct: float = Field(1.0, ge=0, lt=50, description="ROI percentile mapped to 0 (dB image)")
    roi_norm_high_pct: float = Field(99.5, gt=50, le=100, description="ROI percentile mapped to 1 (dB image)")

    @field_validator("publish_endpoint")
    @classmethod
    def _loopback(cls, v: str) -> str:
        from thzcore.netsec import is_loopback_endpoint
        ok = is_loopback_endpoint(v)
        if not ok:
            raise ValueError(f"processing.publish_endpoint={v!r}: frames and face ROIs are published on loopback "
                             "only (tcp://127.0.0.1:PORT or ipc://PATH)")
        return v

    @model_validator(mode="after")
    def _gate_order(self) -> "ProcessingConfig":
        if self.gate_max_m <= self.gate_min_m:
            raise ValueError(f"processing.gate_max_m={self.gate_max_m} must exceed gate_min_m={self.gate_min_m}")
        return self

"""The `processing` config section: range gate, pixel rule, averaging, ROI."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from thzcore.config import Section


class ProcessingConfig(Section):
    gate_min_m: float = Field(5.75, gt=0, description="near edge of the range gate (m)")
    gate_max_m: float = Field(6.25, gt=0, description="far edge of the range gate (m)")
    pixel_rule: Literal["peak", "sum"] = Field("peak", description="pixel = peak or summed power in the gate")
    frames_averaged: int = Field(3, ge=1, le=32, description="consecutive frames averaged into one output frame")
    output_scale: Literal["db", "linear"] = Field("db", description="frame intensity in dB (power) or linear power")
    roi_width_m: float = Field(0.26, gt=0, description="physical width of the face ROI box (m)")
    roi_height_m: float = Field(0.30, gt=0, description="physical height of the face ROI box (m)")
    roi_size: int = Field(64, ge=8, description="ROI side in pixels after bicubic resize")

    @model_validator(mode="after")
    def _gate_order(self) -> "ProcessingConfig":
        if self.gate_max_m <= self.gate_min_m:
            raise ValueError(f"processing.gate_max_m={self.gate_max_m} must exceed gate_min_m={self.gate_min_m}")
        return self

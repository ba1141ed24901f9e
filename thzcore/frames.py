"""The raw frame: the IF sample block a digitizer returns for one raster frame, with galvo feedback."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thzcore.wire import Message, WireError


@dataclass
class RawFrame:
    """One raster frame as acquired.

    if_samples:  int16 (lines, chirps_per_line, samples_per_chirp), dechirped IF, ADC counts
    feedback_x:  float32 (lines, chirps_per_line), fast-axis position feedback at each chirp start,
                 metres at the standoff plane (sensor delay included, as measured)
    feedback_y:  float32 (lines,), slow-axis position feedback at each line centre (m)
    direction:   int8 (lines,), +1 for a forward (increasing x) line, -1 for backward
    meta:        JSON-able facts: calibration_id, sim truth (identity, posture, concealed) when simulated
    """

    frame_id: int
    t_acquired: float
    scanner_id: str
    if_samples: np.ndarray
    feedback_x: np.ndarray
    feedback_y: np.ndarray
    direction: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.if_samples.ndim != 3:
            raise ValueError(f"if_samples must be (lines, chirps, samples), got shape {self.if_samples.shape}")
        lines, chirps, _ = self.if_samples.shape
        if self.feedback_x.shape != (lines, chirps):
            raise ValueError(f"feedback_x shape {self.feedback_x.shape} != (lines, chirps) = {(lines, chirps)}")
        if self.feedback_y.shape != (lines,) or self.direction.shape != (lines,):
            raise ValueError(f"feedback_y {self.feedback_y.shape} / direction {self.direction.shape} must be ({lines},)")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.if_samples.shape)  # type: ignore[return-value]

    def to_message(self, seq: int) -> Message:
        return Message(
            topic="raw", seq=seq, frame_id=self.frame_id, scanner_id=self.scanner_id, t_acquired=self.t_acquired,
            arrays={"if_samples": self.if_samples.astype("<i2", copy=False),
                    "feedback_x": self.feedback_x.astype("<f4", copy=False),
                    "feedback_y": self.feedback_y.astype("<f4", copy=False),
                    "direction": self.direction.astype("|i1", copy=False)},
            meta=self.meta,
        )

    @classmethod
    def from_message(cls, msg: Message) -> "RawFrame":
        if msg.topic != "raw":
            raise WireError(f"a raw frame needs topic 'raw', got {msg.topic!r}")
        need = {"if_samples": "<i2", "feedback_x": "<f4", "feedback_y": "<f4", "direction": "|i1"}
        for name, dt in need.items():
            if name not in msg.arrays or msg.arrays[name].dtype.str != dt:
                raise WireError(f"raw message lacks {name!r} as {dt}")
        try:
            return cls(msg.frame_id, msg.t_acquired, msg.scanner_id, msg.arrays["if_samples"],
                       msg.arrays["feedback_x"], msg.arrays["feedback_y"], msg.arrays["direction"], dict(msg.meta))
        except ValueError as exc:
            raise WireError(str(exc)) from exc

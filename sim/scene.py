"""What stands in front of the virtual scanner: a subject (head phantom) or a calibration target.

Both are pydantic models so they travel as JSON (the emulator backdoor sends them over the wire)
and land in every simulated frame's `meta["truth"]`.

Coordinates: x to the right and y up as seen from the scanner, in metres at the standoff plane;
range along the beam from the scanner (m).
"""
from __future__ import annotations

import json
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thzcore.labels import POSTURES


class _SceneModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def key(self) -> int:
        """A stable 32-bit key of this scene (seeds the frame noise so two scenes never share speckle)."""
        return zlib.crc32(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode())


class Subject(_SceneModel):
    """A head phantom of the population in one of the paper's postures.

    `offset_*` and `range_m` place the head (range None -> the scanner's standoff); when
    `capture_seed` is given, the per-capture variation (pose jitter, position, expression,
    breathing, balaclava fit) is drawn from it on top of these values.
    """

    kind: Literal["subject"] = "subject"
    identity: int = Field(ge=0, description="index into the population")
    posture: str = Field(description="one of thzcore.labels.POSTURES")
    concealed: bool = Field(False, description="wearing the knitted balaclava")
    offset_x_m: float = Field(0.0, ge=-0.5, le=0.5, description="head centre right of the field centre (m)")
    offset_y_m: float = Field(0.0, ge=-0.5, le=0.5, description="head centre above the field centre (m)")
    range_m: float | None = Field(None, gt=0.5, lt=50.0, description="range of the head centre (m); None = standoff")
    capture_seed: int | None = Field(None, description="seed of the per-capture variation; None = nominal pose")

    @field_validator("posture")
    @classmethod
    def _known_posture(cls, v: str) -> str:
        if v not in POSTURES:
            raise ValueError(f"posture={v!r} is not one of {POSTURES}")
        return v


class Target(_SceneModel):
    """A calibration target.

    knife_edge: a metal half-plane whose edge lies at `offset_x_m` (edge_axis "x": the edge is a
                vertical line crossed by the fast axis; metal for x > offset_x_m) or at
                `offset_y_m` (edge_axis "y": a horizontal edge, metal for y > offset_y_m).
    point:      a small sphere / corner reflector at (offset_x_m, offset_y_m).
    plate:      a flat metal plate filling the field, tilted by `tilt_deg` about the y axis.
    grid:       metal dots on an absorbing board, pitch `grid_pitch_m`, one dot at the offsets.
    """

    kind: Literal["knife_edge", "point", "plate", "grid"]
    range_m: float = Field(gt=0.5, lt=50.0, description="range of the target plane (m)")
    offset_x_m: float = Field(0.0, ge=-1.0, le=1.0, description="x of the edge / point / grid origin (m)")
    offset_y_m: float = Field(0.0, ge=-1.0, le=1.0, description="y of the edge / point / grid origin (m)")
    edge_axis: Literal["x", "y"] = Field("x", description="which coordinate the knife edge sits at")
    tilt_deg: float = Field(0.0, ge=-80.0, le=80.0, description="tilt of the target plane about the y axis (deg)")
    reflectivity: float = Field(1.0, gt=0.0, le=1.0, description="power reflectivity |Gamma|^2 of the metal")
    grid_pitch_m: float = Field(0.05, ge=0.005, le=0.5, description="grid dot pitch (m)")


Scene = Subject | Target


def scene_from_json(data: dict | str) -> Scene | None:
    """Parse a scene sent as JSON (dict or string): a Subject, a Target or None (empty)."""
    if isinstance(data, str):
        data = json.loads(data)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"a scene must be a JSON object or null, got {type(data).__name__}")
    kind = data.get("kind", "subject")
    if kind == "subject":
        return Subject.model_validate(data)
    return Target.model_validate(data)

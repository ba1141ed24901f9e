"""Per-capture variation of a subject: pose jitter, position, expression, breathing, balaclava fit.

All of it is drawn from Subject.capture_seed (None -> the nominal capture: no jitter, mid-range
balaclava values) and scaled by the difficulty: the within-identity spread of expression grows
as 0.6 + 0.8 * difficulty.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict
import numpy as np

from sim.config import SimConfig
from sim.head import Expression
from sim.scene import Subject
from thzcore.labels import POSTURE_YAW_DEG


class Capture(BaseModel):
    """Everything that is true of one capture (also written to meta['truth'])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    x_m: float
    y_m: float
    range_m: float
    lip_delta_m: float
    jaw_open_m: float
    brow_raise_m: float
    cheek_delta_m: float
    breathing_amplitude_m: float
    breathing_phase_rad: float
    gap_mm: float
    loss_db: float
    echo_db: float
    fabric_seed: int
    motion_seed: int = 0
    knit_shift_u_m: float = 0.0      # where the stitch pattern sits on the face this time it was pulled on
    knit_shift_v_m: float = 0.0
    knit_angle_deg: float = 0.0

    def expression(self) -> Expression:
        return Expression(self.lip_delta_m, self.jaw_open_m, self.brow_raise_m, self.cheek_delta_m)


def draw_capture(subject: Subject, cfg: SimConfig, standoff_m: float) -> Capture:
    """Resolve a Subject into its Capture (deterministic in capture_seed)."""
    yaw0 = POSTURE_YAW_DEG[subject.posture]
    r0 = standoff_m if subject.range_m is None else subject.range_m
    b = cfg.balaclava
    if subject.capture_seed is None:
        return Capture(yaw_deg=yaw0, pitch_deg=0.0, roll_deg=0.0, x_m=subject.offset_x_m, y_m=subject.offset_y_m,
                       range_m=r0, lip_delta_m=0.0, jaw_open_m=0.0, brow_raise_m=0.0, cheek_delta_m=0.0,
                       breathing_amplitude_m=0.0, breathing_phase_rad=0.0,
                       gap_mm=0.5 * (b.gap_min_mm + b.gap_max_mm), loss_db=0.5 * (b.loss_min_db + b.loss_max_db),
                       echo_db=0.5 * (b.echo_min_db + b.echo_max_db), fabric_seed=0)
    c = cfg.capture
    rng = np.random.default_rng([int(subject.capture_seed) & 0xFFFFFFFF, subject.identity, 0xCA9])
    e = c.expression_jitter * (0.6 + 0.8 * cfg.difficulty)
    return Capture(
        yaw_deg=yaw0 + c.yaw_jitter_deg * float(rng.standard_normal()),
        pitch_deg=c.pitch_jitter_deg * float(rng.standard_normal()),
        roll_deg=c.roll_jitter_deg * float(rng.standard_normal()),
        x_m=subject.offset_x_m + c.position_jitter_m * float(rng.standard_normal()),
        y_m=subject.offset_y_m + c.position_jitter_m * float(rng.standard_normal()),
        range_m=r0 + float(rng.uniform(-c.range_spread_m, c.range_spread_m)),
        lip_delta_m=e * 0.002 * float(rng.standard_normal()),
        jaw_open_m=e * 0.004 * float(rng.uniform(0.0, 1.0)),
        brow_raise_m=e * 0.002 * float(rng.standard_normal()),
        cheek_delta_m=e * 0.0015 * float(rng.standard_normal()),
        breathing_amplitude_m=c.breathing_amplitude_m * float(rng.uniform(0.5, 1.0)),
        breathing_phase_rad=float(rng.uniform(0.0, 2.0 * np.pi)),
        gap_mm=float(rng.uniform(b.gap_min_mm, b.gap_max_mm)),
        loss_db=float(rng.uniform(b.loss_min_db, b.loss_max_db)),
        echo_db=float(rng.uniform(b.echo_min_db, b.echo_max_db)),
        fabric_seed=int(rng.integers(0, 2**31 - 1)),
        motion_seed=int(rng.integers(0, 2**31 - 1)),
        # a balaclava pulled on again sits differently: its stitches land anywhere within a period
        knit_shift_u_m=float(rng.uniform(0.0, b.knit_period_mm * 1e-3)),
        knit_shift_v_m=float(rng.uniform(0.0, b.knit_period_mm * 1e-3)),
        knit_angle_deg=float(rng.normal(0.0, 5.0)),
    )

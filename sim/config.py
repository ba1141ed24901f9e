"""The `sim` config section: the virtual scanner's population, scene, reflection, balaclava and noise.

Units are SI unless the field name says otherwise (`_db`, `_deg`, `_mm`). Power ratios in dB are
10 log10 of power. Amplitudes are relative to the return of a flat metal plate at normal incidence
in the beam waist (amplitude 1.0, power 0 dB).
"""
from __future__ import annotations

from pydantic import Field, model_validator

from thzcore.config import Section


class ReflectionConfig(Section):
    """How surfaces return the beam: specular physical optics plus a weak diffuse part from roughness."""

    skin_power_reflectivity: float = Field(0.155, gt=0, le=1, description="skin |Gamma|^2 at normal incidence")
    skin_rms_height_m: float = Field(30e-6, ge=0, le=2e-4, description="rms height of the skin's sub-mm roughness (m); sets the coherent loss exp(-(2 k sigma)^2) and the diffuse level")
    skin_correlation_length_m: float = Field(0.25e-3, gt=0, le=5e-3, description="correlation length of the skin roughness (m); sets the width of the diffuse lobe")
    eye_power_reflectivity: float = Field(0.25, gt=0, le=1, description="eye (wet cornea) |Gamma|^2")
    hair_loss_db: float = Field(1.5, ge=0, description="one-way loss through scalp hair (dB)")
    hair_backscatter_db: float = Field(-10.0, le=10, description="backscatter coefficient sigma0 of hair at normal incidence (dB, per unit area)")
    clothing_loss_db: float = Field(1.0, ge=0, description="one-way loss through the shirt on neck/shoulders (dB)")
    metal_power_reflectivity: float = Field(1.0, gt=0, le=1, description="|Gamma|^2 of metal calibration targets")
    point_target_amplitude: float = Field(0.3, gt=0, description="point target return amplitude in the waist, beam centred")
    grid_board_diffuse_db: float = Field(-30.0, le=0, description="absorbing board's diffuse echo behind grid dots (dB)")


class BalaclavaConfig(Section):
    """The knitted layer over a concealed head (drawn per capture inside the ranges)."""

    gap_min_mm: float = Field(0.0, ge=0, description="smallest fabric-to-skin gap drawn per capture (mm)")
    gap_max_mm: float = Field(5.0, ge=0, le=20, description="largest fabric-to-skin gap drawn per capture (mm)")
    loss_min_db: float = Field(1.0, ge=0, description="smallest one-way transmission loss (dB)")
    loss_max_db: float = Field(3.0, ge=0, description="largest one-way transmission loss (dB)")
    echo_min_db: float = Field(-30.0, le=0, description="weakest fabric power reflectivity relative to skin's (dB)")
    echo_max_db: float = Field(-20.0, le=0, description="strongest fabric power reflectivity relative to skin's (dB)")
    knit_period_mm: float = Field(6.0, gt=0, description="knit stitch period (mm)")
    knit_depth: float = Field(0.6, ge=0, le=1, description="modulation depth of the echo by the knit pattern")
    eye_opening_width_m: float = Field(0.11, gt=0, description="width of the eye slot (m)")
    eye_opening_height_m: float = Field(0.035, gt=0, description="height of the eye slot (m)")
    thickness_mm: float = Field(1.5, ge=0, description="fabric thickness; the echo comes from its front face (mm)")

    @model_validator(mode="after")
    def _ranges(self) -> "BalaclavaConfig":
        for lo, hi in (("gap_min_mm", "gap_max_mm"), ("loss_min_db", "loss_max_db"), ("echo_min_db", "echo_max_db")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"sim.balaclava.{lo}={getattr(self, lo)} exceeds {hi}={getattr(self, hi)}")
        return self


class CaptureConfig(Section):
    """Per-capture variation of a subject (drawn from Subject.capture_seed)."""

    yaw_jitter_deg: float = Field(2.5, ge=0, description="std of head yaw around the posture's yaw (deg)")
    pitch_jitter_deg: float = Field(2.5, ge=0, description="std of head pitch (deg)")
    roll_jitter_deg: float = Field(2.0, ge=0, description="std of head roll (deg)")
    position_jitter_m: float = Field(0.015, ge=0, description="std of the head position in the field, x and y (m)")
    range_spread_m: float = Field(0.12, ge=0, description="half width of the uniform range spread around the standoff (m)")
    expression_jitter: float = Field(1.0, ge=0, description="scale of the expression changes (lips, jaw, brow; 1 = natural)")
    breathing_amplitude_m: float = Field(0.0015, ge=0, description="range excursion of breathing sway (m)")
    breathing_hz: float = Field(0.25, gt=0, description="breathing sway frequency (Hz)")
    sway_rotation_deg: float = Field(0.3, ge=0, le=5, description="rms postural sway of the head's yaw and pitch between frames (deg)")
    sway_position_m: float = Field(0.001, ge=0, le=0.02, description="rms postural sway of the head position, each axis (m)")
    sway_band_hz: float = Field(0.7, gt=0, le=5, description="upper frequency of the postural sway (Hz)")


class NoiseConfig(Section):
    """The noise that dominates a THz frame; thermal noise is small. Overridable per scanner (set_noise)."""

    micro_motion: bool = Field(True, description="postural sway of the head between frames (changes the glints' interference)")
    leakage_amplitude: float = Field(0.25, ge=0, description="Tx->Rx leakage tone amplitude (plate = 1)")
    leakage_range_m: float = Field(5.70, gt=0, description="apparent range of the leakage path (m), near R_ref")
    phase_noise_rad: float = Field(0.03, ge=0, description="phase random-walk step per IF sample (rad)")
    gain_drift_db: float = Field(0.4, ge=0, description="rms slow receiver gain drift over a frame (dB)")
    gain_drift_hz: float = Field(3.0, gt=0, description="bandwidth of the gain drift (Hz)")
    line_jitter_s: float = Field(8e-6, ge=0, description="rms trigger timing jitter of each line (s)")
    thermal_counts: float = Field(3.0, ge=0, description="rms receiver thermal noise at the ADC (counts)")
    feedback_noise_m: float = Field(1e-4, ge=0, description="rms position-sensor noise of the galvo feedback (m)")
    full_scale_amplitude: float = Field(2.0, gt=0, description="return amplitude (plate = 1) that reaches ADC full scale")


class SimConfig(Section):
    seed: int = Field(0, description="seed of captures: noise, jitter, placement")
    population_seed: int = Field(1234, description="seed of the identities (anatomy, albedo)")
    n_identities: int = Field(20, ge=1, le=10_000, description="size of the simulated population")
    difficulty: float = Field(0.5, ge=0.0, le=1.0, description="0 = identities very distinct, 1 = barely resolvable")
    map_pitch_m: float = Field(0.0015, gt=0.0002, le=0.005, description="pitch of the scene maps the beam samples (m)")
    reflection: ReflectionConfig = ReflectionConfig()
    balaclava: BalaclavaConfig = BalaclavaConfig()
    capture: CaptureConfig = CaptureConfig()
    noise: NoiseConfig = NoiseConfig()

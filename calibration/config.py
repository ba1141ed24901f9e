"""The `calibration` config section: record store, specification values, tolerances and exposure limits."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, model_validator

from acquisition.config import AcquisitionConfig
from processing.config import ProcessingConfig
from sim.config import SimConfig

from thzcore import datadirs
from thzcore.config import Section
from thzcore.scanner import ScannerConfig


class CalibrationConfig(Section):
    """Where records live, what the scanner must meet, and how the measurements are taken.

    Specification values are the paper's / design's numbers; a check passes when the fitted
    value lies within `spec * (1 +- tol)` (relative) or `spec +- tol` (absolute, where named so).
    dB are of power: 10 log10(P1/P0), which equals 20 log10(A1/A0) for amplitudes.
    """

    store: str = Field("", description="directory of versioned calibration records (empty: calibration/ in the "
                                      "data directory, $THZ_DATA_DIR or the per-user one; thzcore.datadirs)")
    max_age_days: float = Field(30.0, gt=0, description="a record older than this is stale (days)")

    # --- specification -------------------------------------------------------------------
    spec_spot_diameter_m: float = Field(0.015, gt=0, description="spec: 1/e^2 intensity spot diameter at the standoff (m)")
    spec_depth_of_focus_m: float = Field(0.41, gt=0, description="spec: depth of focus 2 z_R (m)")
    spec_face_dynamic_range_db: float | None = Field(
        None, gt=0, description="spec: face dynamic range, dB of power, checked when set. None by default: the "
                                "paper's 8.3 dB (Yildirim et al., SPIE 12742) has no definition we could read, and "
                                "a specular face's glints span ~20 dB by this one (docs/scanner_physics.md)")
    spec_fov_m: float = Field(0.45, gt=0, description="spec: square field of view side at the standoff (m)")
    spec_min_snr_db: float = Field(20.0, description="spec: minimum SNR of the reference plate over the empty scene (dB power)")

    face_dr_low_pct: float = Field(10.0, ge=0, lt=50, description="face dynamic range: lower power percentile")
    face_dr_high_pct: float = Field(90.0, gt=50, le=100, description="face dynamic range: upper power percentile "
                                    "(90/10 is the simulator's definition, docs/scanner_physics.md)")

    # --- tolerances ----------------------------------------------------------------------
    tol_spot_rel: float = Field(0.15, gt=0, lt=1, description="relative tolerance on the spot diameter")
    tol_dof_rel: float = Field(0.20, gt=0, lt=1, description="relative tolerance on the depth of focus")
    tol_waist_position_m: float = Field(0.10, gt=0, description="absolute tolerance of waist position vs standoff (m)")
    tol_dynamic_range_db: float = Field(2.0, gt=0, description="absolute tolerance on the face dynamic range (dB)")
    tol_fov_rel: float = Field(0.03, gt=0, lt=1, description="relative tolerance on each field-of-view side")
    max_nonlinearity_pct: float = Field(1.0, gt=0, description="limit: residual non-linearity, % of full scale")
    max_residual_lag_s: float = Field(20e-6, gt=0, description="limit: lag residual after correction (s)")

    # --- exposure ------------------------------------------------------------------------
    exposure_limit_peak_mw_cm2: float = Field(
        4.0, gt=0, description="limit: instantaneous peak incident power density on target (mW/cm^2); "
                               "set it from the site's regulation (e.g. ICNIRP 2020 local limits)")
    exposure_limit_average_mw_cm2: float = Field(
        1.0, gt=0, description="limit: frame-averaged incident power density, worst 1 cm^2 cell (mW/cm^2)")

    # --- measurement plan ----------------------------------------------------------------
    focus_ranges_m: list[float] = Field(
        [5.77, 5.83, 5.89, 5.95, 6.0, 6.05, 6.11, 6.17, 6.23],
        min_length=4, description="target ranges of the depth-of-focus series (m); ranges outside the processing "
                                  "range gate are skipped (and said so)")
    phase_amplitudes_rel: list[float] = Field(
        [0.5, 0.75, 1.0], min_length=1, description="fast-axis amplitudes of the lag table, relative to the operating one")
    frames_per_point: int = Field(1, ge=1, le=16, description="processed frames averaged per measurement point")
    edge_tilt_deg: float = Field(4.0, ge=0, lt=45, description="knife-edge tilt from the raster axis (deg): slanted edge")
    grid_pitch_m: float = Field(0.05, gt=0, description="pitch of the grid target (m)")

    @property
    def store_dir(self) -> Path:
        """The record store: `store` as given, else calibration/ in the data directory."""
        return datadirs.resolve(self.store, datadirs.CALIBRATION)

    @model_validator(mode="after")
    def _ranges(self) -> "CalibrationConfig":
        if sorted(self.focus_ranges_m) != list(self.focus_ranges_m):
            raise ValueError(f"calibration.focus_ranges_m={self.focus_ranges_m} must be increasing")
        if any(a <= 0 for a in self.phase_amplitudes_rel):
            raise ValueError(f"calibration.phase_amplitudes_rel={self.phase_amplitudes_rel} must all be > 0")
        return self


class CalibrationSettings(Protocol):
    """The sections a calibration reads; the composed pipeline.settings.Settings is one."""

    @property
    def scanner(self) -> ScannerConfig: ...

    @property
    def sim(self) -> SimConfig: ...

    @property
    def acquisition(self) -> AcquisitionConfig: ...

    @property
    def processing(self) -> ProcessingConfig: ...

    @property
    def calibration(self) -> CalibrationConfig: ...

    def model_dump_json(self) -> str: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...

"""The whole configuration: one TOML file, one section per package, cross-section checks here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from acquisition.config import AcquisitionConfig
from calibration.config import CalibrationConfig
from inference.config import InferenceConfig
from processing.config import ProcessingConfig
from sim.config import SimConfig
from thzcore import datadirs
from thzcore.config import ConfigError, Section, format_validation_error, load_toml
from thzcore.scanner import ScannerConfig
from training.config import TrainingConfig


# the per-item paths that default to the data directory: (section, field, name in the data directory)
DATA_PATHS: tuple[tuple[str, str, str], ...] = (
    ("calibration", "store", datadirs.CALIBRATION),
    ("inference", "gallery", datadirs.GALLERY),
    ("inference", "report_dir", datadirs.REPORTS),
    ("acquisition", "record_dir", datadirs.RECORDINGS),
)


class Settings(Section):
    data_dir: str = Field("", description="folder of the calibration store, gallery, reports and recordings "
                                          "($THZ_DATA_DIR wins; empty: the per-user data directory of thz-face)")
    scanner: ScannerConfig = ScannerConfig()
    sim: SimConfig = SimConfig()
    acquisition: AcquisitionConfig = AcquisitionConfig()
    processing: ProcessingConfig = ProcessingConfig()
    inference: InferenceConfig = InferenceConfig()
    training: TrainingConfig = TrainingConfig()
    calibration: CalibrationConfig = CalibrationConfig()

    @model_validator(mode="before")
    @classmethod
    def _data_paths(cls, data: Any) -> Any:
        """Fill every data path left empty (calibration.store, inference.gallery, ...) from the data directory,
        so that `thz config show`, records and recordings name the folder actually used."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        base = data.get("data_dir") or ""
        if not isinstance(base, str):
            return data  # the field's own validation names the wrong type
        for section, name, default in DATA_PATHS:
            sec = data.get(section, {})
            if isinstance(sec, dict):
                if not sec.get(name):
                    data[section] = {**sec, name: str(datadirs.data_path(default, base))}
            elif isinstance(sec, Section) and not getattr(sec, name):
                data[section] = sec.model_copy(update={name: str(datadirs.data_path(default, base))})
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> "Settings":
        f = self.scanner.fmcw
        p = self.processing
        if p.gate_min_m < f.reference_range_m or p.gate_max_m > f.max_range_m:
            raise ValueError(
                f"processing gate [{p.gate_min_m}, {p.gate_max_m}] m is outside the FMCW range window "
                f"[{f.reference_range_m:.3f}, {f.max_range_m:.3f}] m set by scanner.fmcw; narrow the gate "
                "(processing.gate_min_m / gate_max_m) or move scanner.fmcw.reference_range_m"
            )
        if p.roi_width_m > self.scanner.raster.fov_x_m or p.roi_height_m > self.scanner.raster.fov_y_m:
            raise ValueError(
                f"processing.roi_width_m/roi_height_m ({p.roi_width_m}, {p.roi_height_m}) exceed the field of view "
                f"({self.scanner.raster.fov_x_m}, {self.scanner.raster.fov_y_m}); shrink the ROI box"
            )
        return self


def settings_from_dict(data: dict[str, Any], source: str = "config") -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by the TOML file at `path` (or $THZ_CONFIG when path is None)."""
    path = path or os.environ.get("THZ_CONFIG")
    if not path:
        return Settings()
    return settings_from_dict(load_toml(path), source=str(path))

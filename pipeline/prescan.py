"""Before any scan: exposure pre-flight and the calibration record in force (shared by `thz acquire` and `thz run`)."""
from __future__ import annotations

import re

from processing.calibration_model import ProcessingCalibration

from pipeline.settings import Settings


class ScanRefused(RuntimeError):
    """The pre-scan gate refused to scan; the message says why and what to do (the CLI exits 3)."""


def calibrate_hint(text: str, sim: bool) -> str:
    """`text` with every `thz calibrate KIND` it suggests written to run as printed: with --sim for a --sim job."""
    if not sim:
        return text
    def add(m: re.Match[str]) -> str:
        kind, rest = m.group(1), m.group(2)
        return m.group(0) if "--sim" in rest.split() else f"`thz calibrate {kind} --sim{rest}`"
    return re.sub(r"`thz calibrate (\w+)((?: [^`]*)?)`", add, text)


def prepare_scan(settings: Settings, allow_stale: bool = False,
                 sim: bool = False) -> tuple[Settings, ProcessingCalibration | None]:
    """(settings naming the calibration id in force, ProcessingCalibration or None).

    Raises ScanRefused when the configured raster would exceed an exposure limit, and when the
    current calibration record is tampered, for another scanner, or stale (unless allow_stale):
    such a record is reported, never silently used. Without any record the scan runs uncalibrated
    (calibration id '') and says so. With `sim` (the virtual scanner) the `thz calibrate` commands it
    suggests carry --sim, so they run as printed.
    """
    from calibration.api import CalibrationError, current_processing_calibration, exposure_preflight
    from calibration.fits.power_density import ExposureLimitError
    from thzcore.logs import get_logger

    log = get_logger("pipeline.prescan")
    try:
        exposure_preflight(settings)
    except ExposureLimitError as exc:
        raise ScanRefused(f"refused: exposure limit would be exceeded: {exc}") from None
    try:
        pc = current_processing_calibration(settings, allow_stale=allow_stale)
    except CalibrationError as exc:
        raise ScanRefused(calibrate_hint(f"refused: {exc} (or pass --allow-stale-calibration for a stale record)",
                                         sim)) from None
    if pc is None:
        log.warning(calibrate_hint("no calibration record in force: scanning uncalibrated; run `thz calibrate phase`",
                                   sim), extra={"store": str(settings.calibration.store_dir)})
        return settings, None
    acq = settings.acquisition.model_copy(update={"calibration_id": pc.calibration_id})
    return settings.model_copy(update={"acquisition": acq}), pc

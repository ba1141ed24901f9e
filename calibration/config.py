"""The `calibration` config section: record store and tolerances."""
from __future__ import annotations

from pydantic import Field

from thzcore.config import Section


class CalibrationConfig(Section):
    store: str = Field("calibration", description="directory of versioned calibration records")

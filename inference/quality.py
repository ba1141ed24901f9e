"""The enrolment quality gate: a template is only as good as the ROI it came from.

The face locator scores each ROI in [0, 1] (contrast x coverage x containment x focus,
processing/roi.py; `meta.roi.quality`). A template enrolled from a poor ROI (a face cut off at the
frame's edge, out of focus, a few glints) is matched against every later probe, so enrolment refuses
a ROI below `inference.enroll_min_quality` (0.45: the 3rd percentile of unconcealed ROIs the locator
accepts in the default dataset, whose median is 0.72) and the operator scans again. Verification and
identification are not gated: a poor probe is a weaker decision, not a lasting one. A ROI whose
quality is unknown (an image file without the sidecar `thz` writes beside it) is not gated; the
caller says so.
"""
from __future__ import annotations

import math
from typing import Any

from inference.fusion import roi_quality


def enrolment_refusal(meta: dict[str, Any], min_quality: float) -> str | None:
    """Why the ROI with this `meta` may not enrol (one line), or None when it may (or its quality is unknown)."""
    q = roi_quality(meta)
    if math.isnan(q) or q >= min_quality:
        return None
    return (f"ROI quality {q:.2f} below inference.enroll_min_quality={min_quality:g}: scan again "
            "(the whole face in the field, within the depth of focus)")


def quality_known(meta: dict[str, Any]) -> bool:
    return not math.isnan(roi_quality(meta))

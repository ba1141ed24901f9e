"""ROIs for `thz enroll / verify / identify` from an HDF5 raw recording (the processing stage) or a live scan."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from inference.sources import RoiInput
from pipeline.compose import JobError, Pipeline
from pipeline.run import subject_scene
from processing.stage import ProcessingStage


def rois_from_recording(path: str, settings, limit: int | None = None) -> Iterator[RoiInput]:
    """Process an HDF5 raw recording (processing's stage: averaging + face ROI) and yield the ROIs found."""
    stage = ProcessingStage(settings.scanner, settings.processing)
    n = 0
    for out in stage.run_recording(path):
        if not out.roi.found or out.roi.image is None:
            continue
        meta = out.meta()
        yield RoiInput(np.asarray(out.roi.image, np.float32), f"recording:{path}", out.frame.frame_id,
                       {"calibration_id": meta.get("calibration_id"), "truth": meta.get("truth")})
        n += 1
        if limit is not None and n >= limit:
            return


def live_rois(settings, sim: bool, identity: int | None, posture: str, concealed: bool, n: int = 1,
              raw_source: str = "auto"):
    """ROIs from a live scan for `thz enroll/verify/identify --sim|--live`."""
    with Pipeline(settings, None, sim=sim, raw_source=raw_source) as pipe:
        if sim:
            scene = subject_scene(int(identity), posture, concealed, int(np.random.default_rng().integers(1 << 31)))
            got = pipe.clean_rois(scene, n, 60.0)
        else:
            raise JobError("--live ROI capture needs the acquisition daemon; use --sim or --recording")
        return [RoiInput(img, f"sim:{m.frame_id}", m.frame_id, {"truth": m.meta.get("truth")}) for m, img in got]

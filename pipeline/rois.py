"""ROIs for `thz enroll / verify / identify` from an HDF5 raw recording (the processing stage) or a live scan."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from inference.sources import ImageError, RoiInput, image_size, rois_from_images
from pipeline.compose import JobConfigError, Pipeline
from pipeline.run import subject_scene
from pipeline.settings import Settings
from processing.roi import extract_face_roi
from processing.stage import ProcessingStage
from thzcore.frameimage import load_frame_image


def rois_from_image_files(paths: list[str], settings: Settings, size: int, resize: bool = False) -> list[RoiInput]:
    """`--image` files: a size x size THz ROI as it is (its sidecar's quality kept), or a processed frame
    (lines x samples_per_line of the scanner, in dB: thzcore/frameimage.py) through the face finder,
    as the processing stage would; anything else is refused with the shapes that are accepted."""
    raster = settings.scanner.raster
    frame_wh = (raster.samples_per_line, raster.lines_per_frame)
    out: list[RoiInput] = []
    for p in paths:
        wh = image_size(p)
        if wh == frame_wh and wh != (size, size):
            db, fid = load_frame_image(p)
            roi = extract_face_roi(db, settings.scanner, settings.processing, scale="db")
            if not roi.found or roi.image is None:
                raise ImageError(f"image {p}: a frame in which the face finder found no face ({roi.reason})")
            out.append(RoiInput(np.asarray(roi.image, np.float32), f"frame:{p}", fid, {"roi": roi.meta()}))
        elif wh == (size, size) or (resize and wh[0] == wh[1]):
            out.extend(rois_from_images([p], size, resize))
        else:
            shape = f"{wh[0]}x{wh[1]}" + (" is not square" if wh[0] != wh[1] else "")
            raise ImageError(f"image {p}: {shape}; --image takes a {size}x{size} THz ROI (grayscale) or a "
                             f"{frame_wh[0]}x{frame_wh[1]} processed frame in dB (float TIFF, or 16-bit PNG with its "
                             "dB scale: thzcore/frameimage.py)" + ("" if resize else "; --resize resamples a square ROI"))
    return out


def rois_from_recording(path: str, settings: Settings, limit: int | None = None) -> Iterator[RoiInput]:
    """Process an HDF5 raw recording (processing's stage: averaging + face ROI) and yield the ROIs found."""
    stage = ProcessingStage(settings.scanner, settings.processing)
    n = 0
    for out in stage.run_recording(path):
        if not out.roi.found or out.roi.image is None:
            continue
        meta = out.meta()
        yield RoiInput(np.asarray(out.roi.image, np.float32), f"recording:{path}", out.frame.frame_id,
                       {"calibration_id": meta.get("calibration_id"), "truth": meta.get("truth"),
                        "roi": meta.get("roi")})
        n += 1
        if limit is not None and n >= limit:
            return


def live_rois(settings: Settings, sim: bool, identity: int | None, posture: str, concealed: bool, n: int = 1,
              raw_source: str = "emulator", timeout_s: float = 60.0) -> list[RoiInput]:
    """ROIs from a live scan for `thz enroll/verify/identify --sim|--live`.

    --sim: the simulated subject `identity` in `posture`, only ROIs that show it; --live: the next n
    face ROIs of the configured scanner, whoever stands in front of it.
    """
    with Pipeline(settings, None, sim=sim, raw_source=raw_source) as pipe:
        if sim:
            if identity is None:
                raise JobConfigError("a simulated scan needs the identity of the subject in front of the scanner")
            scene = subject_scene(int(identity), posture, concealed, int(np.random.default_rng().integers(1 << 31)))
            got = pipe.clean_rois(scene, n, timeout_s)
        else:
            got = pipe.next_rois(n, timeout_s)
        return [RoiInput(img, f"{'sim' if sim else 'live'}:{m.frame_id}", m.frame_id,
                         {"truth": m.meta.get("truth"), "roi": m.meta.get("roi")})   # roi.quality: fusion weight
                for m, img in got]

"""Where raw frames come from: memory (any iterable), an HDF5 recording, or the ZMQ `raw` topic.

HDF5 layout read (the first group, depth-first, that holds a 4-D dataset `if_samples`):
    if_samples  int16   (frames, lines, chirps, samples)
    feedback_x  float32 (frames, lines, chirps)
    feedback_y  float32 (frames, lines)
    direction   int8    (frames, lines) or (lines,)
    frame_id    int     (frames,)        optional, default 0..n-1
    t_acquired  float   (frames,)        optional, default 0
    t_complete  float   (frames,)        optional: scan complete (meta `t_complete`; 0 = not stamped)
    meta        string  (frames,)        optional: the frame's meta as JSON (sim truth, calibration_id, ...)
Attributes `scanner_id` and `calibration_id` are read from the group, its parent or the file
(acquisition's recorder puts them on /entry). Rows past the dataset `count` (or `frames_written`)
and rows whose `complete` flag is 0 (a recorder that crashed mid-frame) are skipped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.recording import RecordingError  # the one recording error, also raised by this module
from thzcore.wire import WireError, decode

log = get_logger(__name__)


def _find_group(h5) -> object:
    found = []

    def visit(name, obj):
        if name.split("/")[-1] == "if_samples" and getattr(obj, "ndim", 0) == 4:
            found.append(obj.parent)
            return True
        return None
    h5.visititems(visit)
    if not found:
        raise RecordingError(f"{h5.filename}: no 4-D dataset 'if_samples' (frames, lines, chirps, samples)")
    return found[0]


def read_recording(path: str | Path, start: int = 0, stop: int | None = None) -> Iterator[RawFrame]:
    """Yield RawFrames from an HDF5 recording (opened read-only, SWMR when the file allows)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"recording {str(p)!r} does not exist")
    try:
        fh = h5py.File(p, "r", swmr=True)
    except (OSError, RuntimeError, ValueError):
        try:
            fh = h5py.File(p, "r")
        except (OSError, RuntimeError, ValueError) as exc:
            raise RecordingError(f"{p}: not a readable HDF5 file ({' '.join(str(exc).split())})") from None
    with fh:
        g = _find_group(fh)
        for name in ("feedback_x", "feedback_y", "direction"):
            if name not in g:
                raise RecordingError(f"{p}: group {g.name} lacks dataset {name!r}")
        x = g["if_samples"]
        n = x.shape[0]
        for holder in (g, g.parent, fh):
            if "frames_written" in holder.attrs:
                n = min(n, int(holder.attrs["frames_written"]))
        for name in ("count", "frames_written"):
            if name in g:
                n = min(n, int(np.asarray(g[name]).reshape(-1)[0]))
        complete = np.asarray(g["complete"][:n]) if "complete" in g else np.ones(n, np.uint8)

        def attr(key: str):
            for holder in (g, g.parent, fh):
                if key in holder.attrs:
                    v = holder.attrs[key]
                    return v.decode() if isinstance(v, bytes) else v
            return None
        scanner_id = str(attr("scanner_id") or "unknown")
        calibration_id = attr("calibration_id") or None
        d = g["direction"]
        stop = n if stop is None else min(stop, n)
        for i in range(start, stop):
            if not complete[i]:
                log.warning("incomplete frame skipped", extra={"file": str(p), "index": i})
                continue
            direction = np.asarray(d[i] if d.ndim == 2 else d[()], dtype=np.int8)
            meta: dict = {}
            if calibration_id is not None:
                meta["calibration_id"] = str(calibration_id)
            if "meta" in g and g["meta"].shape[0] > i:
                try:
                    m = json.loads(g["meta"][i])
                    if isinstance(m, dict):
                        meta.update(m)
                except (TypeError, ValueError):
                    log.warning("unreadable frame meta in recording", extra={"file": str(p), "index": i})
            if "t_complete" in g and g["t_complete"].shape[0] > i and float(g["t_complete"][i]) > 0:
                meta["t_complete"] = float(g["t_complete"][i])
            yield RawFrame(int(g["frame_id"][i]) if "frame_id" in g else i,
                           float(g["t_acquired"][i]) if "t_acquired" in g else 0.0, scanner_id,
                           np.asarray(x[i], dtype=np.int16), np.asarray(g["feedback_x"][i], dtype=np.float32),
                           np.asarray(g["feedback_y"][i], dtype=np.float32), direction, meta)


def write_recording(path: str | Path, frames: list[RawFrame]) -> Path:
    """Write frames in the layout read_recording reads (tests and hand-made recordings)."""
    import h5py

    if not frames:
        raise ValueError("write_recording needs at least one frame")
    p = Path(path)
    with h5py.File(p, "w") as fh:
        g = fh.create_group("entry/data")
        g.attrs["scanner_id"] = frames[0].scanner_id
        g.create_dataset("if_samples", data=np.stack([f.if_samples for f in frames]))
        g.create_dataset("feedback_x", data=np.stack([f.feedback_x for f in frames]))
        g.create_dataset("feedback_y", data=np.stack([f.feedback_y for f in frames]))
        g.create_dataset("direction", data=np.stack([f.direction for f in frames]).astype(np.int8))
        g.create_dataset("frame_id", data=np.array([f.frame_id for f in frames], np.int64))
        g.create_dataset("t_acquired", data=np.array([f.t_acquired for f in frames], np.float64))
        g.create_dataset("meta", data=[json.dumps(f.meta) for f in frames], dtype=h5py.string_dtype())
    return p


def raw_frame_from_parts(parts: list[bytes]) -> RawFrame:
    """Decode one multipart `raw` message; raises WireError on anything malformed."""
    return RawFrame.from_message(decode(parts, expect_topic="raw"))


__all__ = ["RecordingError", "read_recording", "write_recording", "raw_frame_from_parts", "WireError"]

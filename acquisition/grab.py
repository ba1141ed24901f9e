"""A few frames from the configured devices, in memory: the acquisition daemon without file or ZMQ."""
from __future__ import annotations

import tempfile
from typing import Any

from acquisition.config import AcquisitionSettings
from acquisition.daemon import AcquisitionDaemon
from thzcore.frames import RawFrame


def grab_frames(settings: AcquisitionSettings, k: int, **daemon_kw: Any) -> list[RawFrame]:
    """Acquire `k` frames from the devices `settings` addresses and return them (no file, no ZMQ by default).

    Raises RuntimeError when the run did not deliver all k frames (the reason is in the message).
    """
    frames: list[RawFrame] = []
    kw = {"publish": False, "record": False, **daemon_kw}
    user_cb = kw.pop("on_frame", None)

    def keep(f: RawFrame) -> None:
        frames.append(f)
        if user_cb is not None:
            user_cb(f)

    with tempfile.TemporaryDirectory(prefix="thz-grab-") as d:
        kw.setdefault("out_dir", d)
        result = AcquisitionDaemon(settings, on_frame=keep, **kw).run(frames=k)
    if result.exit_code != 0 or len(frames) != k:
        raise RuntimeError(f"grabbed {len(frames)} of {k} frames: {result.status} {result.reason}")
    return frames

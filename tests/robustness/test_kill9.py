"""kill -9 while recordings are created and written, at seeded random moments: every file left is one that
`recover` opens, every frame it keeps is whole, or there is no file (issue 13, item 8)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from acquisition.recover import recover
from thzcore.recording import CREATING_SUFFIX, RecordingError, read_recording

pytestmark = pytest.mark.integration  # real pty / TCP / processes

SHAPE = (4, 16, 8)

# a child that writes recordings of a few frames, one after another, until killed; each frame's samples
# are a function of its frame id, so the parent can check every frame it finds
WRITER = textwrap.dedent(f"""
    import sys, numpy as np
    from thzcore.frames import RawFrame
    from thzcore.recording import Recorder
    out, frames = sys.argv[1], int(sys.argv[2])
    shape = {SHAPE!r}
    k = 0
    print("ready", flush=True)
    while True:
        rec = Recorder(f"{{out}}/rec{{k:05d}}.h5", shape, {{"scanner_id": "s1"}}, grow=2)
        for i in range(frames):
            fid = k * 1000 + i
            a = np.full(shape, fid % 30000, np.int16)
            rec.write(RawFrame(fid, 1.0 + fid, "s1", a, np.full(shape[:2], 0.1, np.float32),
                               np.zeros(shape[0], np.float32), np.ones(shape[0], np.int8)), seq=i)
        rec.close()
        k += 1
""")

# a child killed by SIGKILL in the middle of creating the file (after h5py wrote its first bytes)
KILL_IN_CREATION = textwrap.dedent(f"""
    import os, signal, sys
    import thzcore.recording as r
    real = r.make_layout
    def dying(f, *a, **k):
        f.flush()  # what h5py has written so far reaches the disk: the 48-byte stub of the issue
        os.kill(os.getpid(), signal.SIGKILL)
    r.make_layout = dying
    r.Recorder(sys.argv[1], {SHAPE!r}, {{"scanner_id": "s1"}})
""")


def _env():
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_kill_during_creation_leaves_no_recording(tmp_path, matrix):
    path = tmp_path / "session.h5"
    p = subprocess.run([sys.executable, "-c", KILL_IN_CREATION, str(path)], env=_env(), timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert not path.exists(), f"a {path.stat().st_size}-byte file was left at the recording's name"
    assert (tmp_path / ("session.h5" + CREATING_SUFFIX)).exists()  # the half-made file, under another name
    matrix.record("kill -9 (recordings)", "during creation", "no recording left")


def _check_dir(d: Path) -> tuple[int, int]:
    """Recover every recording left in d; (files, frames) checked; raises on any bad file or frame."""
    files = frames = 0
    for h5 in sorted(d.glob("*.h5")):
        try:
            recover(h5, keep_original=False)
        except RecordingError as exc:  # pragma: no cover - the failure this test exists to catch
            raise AssertionError(f"{h5.name} ({h5.stat().st_size} bytes) cannot be recovered: {exc}") from None
        r = read_recording(h5)
        for i in range(r.frames):
            fid = int(r.data["frame_id"][i])
            assert np.all(r.data["if_samples"][i] == fid % 30000), f"{h5.name}: frame {fid} corrupt"
            assert np.all(r.data["feedback_x"][i] == np.float32(0.1))
        files += 1
        frames += r.frames
    return files, frames


def _kill_at_random_moments(tmp_path, n_kills: int, seed: int, matrix) -> None:
    rng = np.random.default_rng(seed)
    total_files = total_frames = 0
    for k in range(n_kills):
        d = tmp_path / f"run{k}"
        d.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(int(rng.integers(1, 4)))],
                                env=_env(), stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.0, 0.4)))  # the seeded random moment of the kill: the fault itself
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        files, frames = _check_dir(d)
        total_files += files
        total_frames += frames
    matrix.record("kill -9 (recordings)", f"{n_kills} kills at seeded moments (seed {seed})",
                  f"{total_files} files recovered, {total_frames} frames checked, 0 corrupt",
                  corrupt_frames=0, frames_checked=total_frames)


def test_kill9_at_seeded_random_moments_quick(tmp_path, matrix):
    _kill_at_random_moments(tmp_path, 3, seed=13, matrix=matrix)


@pytest.mark.slow
def test_kill9_at_seeded_random_moments_many(tmp_path, matrix):
    _kill_at_random_moments(tmp_path, 40, seed=1313, matrix=matrix)

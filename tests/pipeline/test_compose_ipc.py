"""The `raw` hop inside one process: an ipc:// socket in a folder only its owner can enter, gone after stop."""
from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import zmq

from pipeline.compose import Pipeline, startup_steps
from pipeline.settings import Settings

pytestmark = pytest.mark.integration  # starts the emulator process and the daemon


@pytest.mark.skipif(not zmq.has("ipc"), reason="this libzmq has no ipc transport")
def test_the_daemon_hands_raw_frames_to_processing_over_a_private_ipc_socket():
    steps: list[tuple[int, int, str]] = []
    with Pipeline(Settings(), None, sim=True, raw_source="emulator", on_step=lambda *a: steps.append(a)) as pipe:
        # start-up progress: each stage reported as it starts, in order, then "up"
        assert steps == [(0, 4, "device emulators"), (1, 4, "acquisition daemon"), (2, 4, "processing (Numba kernels)"),
                         (3, 4, "result collector"), (4, 4, "up")]
        assert [s[2] for s in steps[:-1]] == startup_steps(True, "emulator", engine=False)
        raw = pipe.daemon.endpoints["raw"]
        assert raw.startswith("ipc://")
        folder = Path(raw[len("ipc://"):]).parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        deadline = time.monotonic() + 60
        while pipe.processing.counters.received < 2 and time.monotonic() < deadline:
            pipe.check_alive()
            time.sleep(0.1)
        assert pipe.processing.counters.received >= 2 and pipe.processing.counters.dropped_malformed == 0
    assert not folder.exists()

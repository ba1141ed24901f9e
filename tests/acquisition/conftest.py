"""Shared fixtures: small scanner settings, an in-process emulator on real transports, a daemon runner."""
from __future__ import annotations

import threading
import zlib
from typing import Any, Callable

import pytest

from acquisition.daemon import AcquisitionDaemon, RunResult
from pipeline.settings import Settings

# 8 Hz slow axis -> 2 * 32 / 8 = 8 lines per frame of 64 chirps x 128 samples: 131 kB, 125 ms a frame
SMALL = {
    "scanner": {"raster": {"slow_axis_hz": 8.0}, "fmcw": {"chirps_per_line": 64}},
    "acquisition": {"raw_endpoint": "tcp://127.0.0.1:*", "status_endpoint": "tcp://127.0.0.1:*",
                    "timeout_s": 0.5, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
                    "line_trigger_timeout_s": 0.2, "heartbeat_s": 0.1},
}


def small_settings(**acq: Any) -> Settings:
    data = {k: dict(v) for k, v in SMALL.items()}
    data["acquisition"] = {**data["acquisition"], **acq}
    return Settings.model_validate(data)


def point_at(settings: Settings, ends: dict[str, Any]) -> Settings:
    acq = settings.acquisition.model_copy(update={"galvo_port": ends["galvo_port"],
                                                  "receiver_resource": ends["receiver_resource"]})
    return settings.model_copy(update={"acquisition": acq})


@pytest.fixture(scope="package")
def emulator():
    """One in-process emulator (fast mode) for the package; faults are cleared after each test."""
    from sim.emulators import ScannerEmulator

    s = small_settings()
    emu = ScannerEmulator(s.scanner, s.sim, seed=3, realtime=False)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator):
    emulator.handle({"cmd": "clear_faults"})
    yield emulator
    emulator.handle({"cmd": "clear_faults"})


def true_crcs(emu) -> set[int]:
    return {crc for _, crc, _ in emu.receiver.produced}


def crc_le(a) -> int:
    return zlib.crc32(a.astype("<i2").tobytes())


def run_daemon(settings: Settings, out_dir, frames: int, inject: Callable[[int], None] | None = None,
               **kw: Any) -> tuple[RunResult, AcquisitionDaemon, list]:
    """Run a daemon to `frames`; `inject(n)` is called after the n-th delivered frame (in the daemon thread)."""
    got: list = []

    def on_frame(f):
        got.append(f)
        if inject is not None:
            inject(len(got))

    d = AcquisitionDaemon(settings, out_dir=out_dir, on_frame=on_frame, **kw)
    result: list[RunResult] = []
    t = threading.Thread(target=lambda: result.append(d.run(frames=frames)))
    t.start()
    t.join(timeout=60)
    if t.is_alive():
        d.request_stop("test timeout")
        t.join(timeout=30)
        pytest.fail("daemon did not finish within 60 s")
    return result[0], d, got

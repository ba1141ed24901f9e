"""The emulated galvo parks itself when the host is gone (issue 13, item 9): its watchdog runs on the
controller's own timer, not only when a command or a status query arrives. Fake clock, real pty, no sleep."""
from __future__ import annotations

import pytest

import threading

from acquisition.galvo import GalvoController
from acquisition.galvo_protocol import FLAG_WATCHDOG
from acquisition.raster import AxisLimits, GalvoLimits, optical_angle_mapping
from sim.emulators.faults import FaultBook
from sim.emulators.galvo_device import GalvoDevice, GalvoLimits as DevLimits
from sim.emulators.galvo_port import PtyGalvoPort

pytestmark = pytest.mark.integration  # real pty / TCP / processes


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def advance(self, dt: float) -> None:
        with self._lock:
            self.t += dt


def _running(tmp_path, clock, watchdog_s=3.0):
    dev = GalvoDevice(6.0, DevLimits(3.8, 2.9), clock=clock)
    port = PtyGalvoPort(dev, tmp_path / "galvo", 115200, FaultBook())
    port.start()
    to_deg, to_m = optical_angle_mapping(6.0)
    g = GalvoController(str(tmp_path / "galvo"), 115200, 2.0,
                        GalvoLimits(AxisLimits(0.4, 100.0), AxisLimits(0.3, 10.0)), to_deg, to_m)
    g.open()
    for c in ("WAVE X SINE", "AMP X 2.00000", "FREQ X 32.00000", "WAVE Y SAW", "AMP Y 1.00000",
              "FREQ Y 1.00000", "ARM", "START"):
        g.query(c)
    g.set_watchdog(watchdog_s)
    return dev, port, g


def test_the_emulated_galvo_parks_within_its_watchdog_period_after_the_host_is_gone(tmp_path, matrix):
    clock = FakeClock()
    dev, port, g = _running(tmp_path, clock)
    try:
        assert dev.tick() == "RUNNING"
        g.close()  # the host dies: its port is closed, no command will come again
        clock.advance(2.9)
        assert dev.tick() == "RUNNING" and not dev.watchdog_parked.is_set()  # within the period: still scanning
        clock.advance(0.2)
        # nobody sends a command or asks for status: the controller's own timer must park it
        assert dev.watchdog_parked.wait(5.0), "the watchdog did not park the mirrors"
        assert dev.state == "PARKED" and dev.flags & FLAG_WATCHDOG and dev.position_deg() == (0.0, 0.0)
        matrix.record("galvo emulator", "host gone, watchdog 3 s (fake clock)", "parked at 3.1 s")
    finally:
        port.stop()


def test_a_host_that_keeps_talking_is_not_parked(tmp_path):
    clock = FakeClock()
    dev, port, g = _running(tmp_path, clock)
    try:
        for _ in range(10):  # 10 x 1 s of fake time, one status query per second
            clock.advance(1.0)
            assert g.status().state == "RUNNING"
        assert not dev.watchdog_parked.is_set()
    finally:
        g.close()
        port.stop()

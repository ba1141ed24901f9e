"""ScannerEmulator: the galvo on a pty, the receiver on loopback TCP and the backdoor, sharing one VirtualScanner."""
from __future__ import annotations

import math
import tempfile
import threading
from pathlib import Path
from typing import Any

from sim.config import SimConfig
from sim.emulators.backdoor import Backdoor
from sim.emulators.faults import KINDS, Fault, FaultBook
from sim.emulators.galvo_device import GalvoDevice, GalvoLimits
from sim.emulators.galvo_port import PtyGalvoPort
from sim.emulators.physics import Physics
from sim.emulators.receiver_device import ReceiverDevice
from sim.emulators.scpi_server import ScpiServer
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


class ScannerEmulator:
    """Both devices of the scanner behind their real transports (docs/protocols.md).

        emu = ScannerEmulator(settings.scanner, settings.sim, seed=0)
        ends = emu.start()   # {"galvo_port": ".../galvo", "receiver_resource": "TCPIP::...", "backdoor": "tcp://..."}
        ...
        emu.stop()

    The galvo's hardware limits are those of scanner.raster (as optical angles at the standoff),
    so a host that respects its configured limits is never refused.
    """

    def __init__(self, scanner_cfg: ScannerConfig, sim_cfg: SimConfig, seed: int = 0, *,
                 pty_link: str | Path | None = None, baudrate: int = 115200, receiver_port: int = 0,
                 backdoor_endpoint: str = "tcp://127.0.0.1:*", realtime: bool = True,
                 max_fast_hz: float = 100.0, max_slow_hz: float = 10.0) -> None:
        self.seed = int(seed)
        self.realtime = realtime
        self._tmp = None
        if pty_link is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="thz-emu-")
            pty_link = Path(self._tmp.name) / "galvo"
        r, d = scanner_cfg.raster, scanner_cfg.optics.standoff_m
        limits = GalvoLimits(math.degrees(math.atan(r.max_fast_amplitude_m / d)),
                             math.degrees(math.atan(r.max_slow_amplitude_m / d)), max_fast_hz, max_slow_hz)
        self.faults = FaultBook()
        self.physics = Physics(scanner_cfg, sim_cfg, self.seed)
        self.galvo = GalvoDevice(d, limits)
        self.receiver = ReceiverDevice(self.physics, self.galvo, realtime=realtime)
        self.galvo_port = PtyGalvoPort(self.galvo, pty_link, baudrate, self.faults)
        self.scpi = ScpiServer(self.receiver, self.faults, port=receiver_port, seed=self.seed)
        self.backdoor = Backdoor(self.handle, backdoor_endpoint)
        self.stopped = threading.Event()
        self._started = False

    def endpoints(self) -> dict[str, Any]:
        return {"galvo_port": str(self.galvo_port.link_path), "galvo_baudrate": self.galvo_port.baudrate,
                "receiver_resource": self.scpi.resource, "backdoor": self.backdoor.endpoint, "seed": self.seed,
                "realtime": self.realtime}

    def start(self, warm_up: bool = True) -> dict[str, Any]:
        """Open the transports (after computing one frame, so the first real one is not slowed by compiling)."""
        if warm_up:
            log.info("emulator warm-up frame", extra={"seconds": round(self.physics.warm_up(), 3)})
        self.galvo_port.start()
        self.scpi.start()
        self.backdoor.start()
        self._started = True
        log.info("scanner emulator running", extra=self.endpoints())
        return self.endpoints()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.backdoor.stop()
        self.scpi.stop()
        self.galvo_port.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
        self.stopped.set()

    def __enter__(self) -> "ScannerEmulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- backdoor requests ---
    def stats(self) -> dict[str, Any]:
        return {"frames_served": self.receiver.frames_served, "connections": self.scpi.connections,
                "unplugs": self.galvo_port.unplugs, "faults_fired": dict(self.faults.fired),
                "faults_pending": self.faults.pending(), "galvo_out_of_range": self.galvo.out_of_range,
                "galvo_state": self.galvo.tick(), "model_rebuilds": self.physics.rebuilds,
                "receiver_state": self.receiver.state}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        if cmd == "ping":
            return {}
        if cmd == "info":
            return {"endpoints": self.endpoints(), "scene": self.physics.scene(), **self.stats()}
        if cmd == "stats":
            return self.stats()
        if cmd == "scene":
            return {"scene": self.physics.scene()}
        if cmd == "set_scene":
            return {"scene": self.physics.set_scene(req.get("scene"))}
        if cmd == "set_noise":
            self.physics.set_noise(**_params(req))
            return {}
        if cmd == "set_beam":
            self.physics.set_beam(**_params(req))
            return {}
        if cmd == "set_galvo":
            self.physics.set_galvo(**_params(req))
            return {}
        if cmd == "truth":
            return {"truth": self.physics.truth()}
        if cmd == "produced":
            return {"frames": [list(x) for x in self.receiver.produced]}
        if cmd == "galvo_log":
            with self.galvo.lock:
                lines = list(self.galvo.log)
                if req.get("clear"):
                    self.galvo.log.clear()
            return {"commands": lines, "out_of_range": self.galvo.out_of_range}
        if cmd == "fault":
            return self._fault(req)
        if cmd == "clear_faults":
            self.faults.clear()
            with self.galvo.lock:
                self.galvo.stall_until = -math.inf
            return {}
        if cmd == "shutdown":
            threading.Thread(target=self.stop, daemon=True).start()
            return {}
        raise ValueError(f"unknown backdoor command {cmd!r}")

    def _fault(self, req: dict[str, Any]) -> dict[str, Any]:
        device, kind = req.get("device"), req.get("kind")
        if kind not in KINDS or device not in KINDS[kind]:
            raise ValueError(f"fault {kind!r} on {device!r}: kinds are {KINDS}")
        if kind == "error":
            code, text = int(req.get("code", -300)), str(req.get("text", "Device-specific error"))
            (self.galvo if device == "galvo" else self.receiver).push_error(code, text)
            return {}
        if kind == "stall":
            self.galvo.stall(float(req.get("seconds", 0.0)))
            return {}
        if kind == "unplug":
            self.galvo_port.unplug(float(req.get("replug_after_s", 0.5)))
            return {}
        if kind == "disconnect" and req.get("now", True):
            return {"closed": self.scpi.disconnect()}
        params = {k: req[k] for k in ("seconds", "mode", "fraction") if k in req}
        if kind == "corrupt" and params.get("mode", "payload") not in ("payload", "header"):
            raise ValueError(f"corrupt mode {params['mode']!r}: 'payload' or 'header'")
        self.faults.arm(Fault(device, kind, str(req.get("match", "")), int(req.get("count", 1)), params))
        return {}


def _params(req: dict[str, Any]) -> dict[str, Any]:
    p = req.get("params", {})
    if not isinstance(p, dict):
        raise ValueError('"params" must be a JSON object')
    return p

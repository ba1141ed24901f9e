"""The virtual scanner as a subprocess (`thz sim scanner`) and a client of its JSON backdoor.

The one way to stand the emulated devices up for a driver: the drivers talk to the process through
the same transports as to real hardware (pty, SCPI socket); the backdoor sets scenes and faults.

    with SimScanner.start(settings, seed=0, realtime=False) as sim:
        sim.backdoor.set_scene({"kind": "point", "range_m": 6.0})
        frames = acquisition.grab.grab_frames(sim.settings_for(settings), 5)
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import zmq

from sim.config import SimConfig
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


class DeviceLink(Protocol):
    """What the emulator needs of the acquisition section: the galvo link's baud rate (and a copy with
    the emulator's port and resource put in)."""

    @property
    def galvo_baudrate(self) -> int: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...


class EmulatorSettings(Protocol):
    """The sections `thz sim scanner` is started with; the composed pipeline.settings.Settings is one."""

    @property
    def scanner(self) -> ScannerConfig: ...

    @property
    def sim(self) -> SimConfig: ...

    @property
    def acquisition(self) -> DeviceLink: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...


class BackdoorError(RuntimeError):
    """The emulator refused a backdoor request, or did not answer in time."""


class BackdoorClient:
    """JSON REQ/REP client; a REQ socket that timed out is replaced (its state machine is stuck)."""

    def __init__(self, endpoint: str, timeout_s: float = 10.0) -> None:
        self.endpoint, self.timeout_s = endpoint, timeout_s
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def call(self, cmd: str, **kw: Any) -> dict[str, Any]:
        s = self._socket()
        s.send(json.dumps({"cmd": cmd, **kw}).encode())
        if not s.poll(int(self.timeout_s * 1000)):
            self.close()
            raise BackdoorError(f"backdoor {self.endpoint}: no reply to {cmd!r} within {self.timeout_s} s")
        reply = json.loads(s.recv())
        if not reply.get("ok"):
            raise BackdoorError(f"backdoor refused {cmd!r}: {reply.get('error')}")
        return reply

    # conveniences
    def set_scene(self, scene: Any) -> dict | None:
        """Place a subject or target (a dict, a pydantic model with model_dump, or None to clear)."""
        if hasattr(scene, "model_dump"):
            scene = scene.model_dump(mode="json")
        return self.call("set_scene", scene=scene)["scene"]

    def scene(self) -> dict | None:
        return self.call("scene")["scene"]

    def set_noise(self, **params: Any) -> None:
        self.call("set_noise", params=params)

    def set_beam(self, **params: Any) -> None:
        """TRUE beam: waist_diameter_m, waist_range_m."""
        self.call("set_beam", params=params)

    def set_galvo(self, **params: Any) -> None:
        """TRUE servo: servo_natural_hz, servo_damping, feedback_delay_s."""
        self.call("set_galvo", params=params)

    def truth(self) -> dict[str, Any]:
        """The scene and the true beam/servo parameters of the virtual scanner."""
        return self.call("truth")["truth"]

    def fault(self, device: str, kind: str, **params: Any) -> dict[str, Any]:
        return self.call("fault", device=device, kind=kind, **params)

    def clear_faults(self) -> None:
        self.call("clear_faults")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def galvo_log(self, clear: bool = False) -> dict[str, Any]:
        return self.call("galvo_log", clear=clear)


class SimScanner:
    """A running `thz sim scanner` process: its endpoints, its backdoor, and settings pointed at it."""

    def __init__(self, proc: subprocess.Popen, endpoints: dict[str, Any], workdir: Path,
                 tmp: tempfile.TemporaryDirectory | None) -> None:
        self.proc, self.endpoints, self.workdir, self._tmp = proc, endpoints, workdir, tmp
        self.backdoor = BackdoorClient(endpoints["backdoor"])

    @classmethod
    def start(cls, settings: EmulatorSettings, seed: int | None = None, realtime: bool = True, workdir: str | Path | None = None,
              startup_timeout_s: float = 120.0) -> "SimScanner":
        """Start the emulator for `settings` (scanner and sim sections), wait for its endpoints line."""
        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="thz-sim-")
            workdir = tmp.name
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
        seed = settings.sim.seed if seed is None else int(seed)
        cmd = [sys.executable, "-m", "thz.cli", "sim", "scanner", "--seed", str(seed),
               "--pty-link", str(wd / "galvo"), "--port", "0",
               "--baudrate", str(settings.acquisition.galvo_baudrate),
               "--scanner-json", settings.scanner.model_dump_json(), "--sim-json", settings.sim.model_dump_json(),
               "--realtime" if realtime else "--fast", "--exit-with-parent"]
        err_path = wd / "emulator.log"
        err = open(err_path, "ab")
        env = {k: v for k, v in os.environ.items() if k != "THZ_CONFIG"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
        err.close()
        deadline = time.monotonic() + startup_timeout_s
        line = b""
        if proc.stdout is None:  # stdout=PIPE above: the endpoints line comes through it
            raise RuntimeError("the scanner emulator was started without a pipe for its endpoints line")
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                break
            r, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        try:
            endpoints = json.loads(line.decode().splitlines()[0])
        except (ValueError, IndexError):
            proc.kill()
            proc.wait()
            tail = err_path.read_text(errors="replace")[-2000:] if err_path.exists() else ""
            if tmp is not None:
                tmp.cleanup()
            raise RuntimeError(f"the scanner emulator did not report its endpoints (exit {proc.returncode}); "
                               f"stderr tail:\n{tail}") from None
        log.info("scanner emulator started", extra={"pid": proc.pid, **endpoints})
        return cls(proc, endpoints, wd, tmp)

    def settings_for(self, settings: EmulatorSettings) -> Any:
        """A copy of `settings` whose acquisition section addresses this emulator."""
        acq = settings.acquisition.model_copy(update={"galvo_port": self.endpoints["galvo_port"],
                                                      "receiver_resource": self.endpoints["receiver_resource"]})
        return settings.model_copy(update={"acquisition": acq})

    def stop(self, timeout_s: float = 10.0) -> int:
        self.backdoor.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return self.proc.returncode

    def __enter__(self) -> "SimScanner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

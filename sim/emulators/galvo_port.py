"""The galvo controller's serial port: a raw-mode pty behind a stable symlink, replies paced like the baud rate.

A serial unplug is a real one: the pty master is closed, so the host's pyserial raises the same
SerialException an unplugged USB adapter gives; after `replug_after_s` a fresh pty appears and
the symlink is moved to it (the host reopens the same path).
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty
from pathlib import Path

from sim.emulators.faults import FaultBook
from sim.emulators.galvo_device import GalvoDevice
from thzcore.logs import get_logger

log = get_logger(__name__)

BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


class PtyGalvoPort:
    def __init__(self, device: GalvoDevice, link_path: str | Path, baudrate: int, faults: FaultBook) -> None:
        if baudrate <= 0:
            raise ValueError(f"baudrate={baudrate} must be > 0")
        self.device, self.link_path, self.baudrate, self.faults = device, Path(link_path), baudrate, faults
        self._master = -1
        self._slave = -1
        self._stop = threading.Event()
        self._replug_at = 0.0
        self._thread: threading.Thread | None = None
        self._fd_lock = threading.Lock()
        self.unplugs = 0

    # --- pty lifecycle ---
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as sent
        os.set_blocking(master, False)
        tmp = self.link_path.with_name(self.link_path.name + ".tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link_path)  # atomic: the host never sees a missing link while plugged
        with self._fd_lock:
            self._master, self._slave = master, slave
        log.info("galvo pty plugged", extra={"link": str(self.link_path), "tty": os.ttyname(slave)})

    def _unplug_now(self) -> None:
        with self._fd_lock:
            master, slave, self._master, self._slave = self._master, self._slave, -1, -1
        for fd in (master, slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def unplug(self, replug_after_s: float) -> None:
        """Close the master now (the host sees a serial unplug); plug a new pty after `replug_after_s`."""
        self._replug_at = time.monotonic() + max(0.0, replug_after_s)
        self._unplug_now()
        self.unplugs += 1
        self.faults.note("galvo", "unplug")
        log.info("galvo pty unplugged", extra={"replug_after_s": replug_after_s})

    def start(self) -> None:
        self.link_path.parent.mkdir(parents=True, exist_ok=True)
        self._plug()
        self._thread = threading.Thread(target=self._serve, name="galvo-pty", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._unplug_now()
        try:
            if self.link_path.is_symlink():
                self.link_path.unlink()
        except OSError:
            pass

    # --- serving ---
    def _write_paced(self, fd: int, data: bytes) -> None:
        """Send at the baud rate: each byte takes 10 bit times on the wire."""
        per_byte = BITS_PER_BYTE / self.baudrate
        t0 = time.monotonic()
        sent = 0
        while sent < len(data):
            chunk = data[sent:sent + 16]
            due = t0 + (sent + len(chunk)) * per_byte
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                sent += os.write(fd, chunk)
            except BlockingIOError:
                time.sleep(0.001)

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            with self._fd_lock:
                fd = self._master
            if fd < 0:
                if time.monotonic() >= self._replug_at:
                    try:
                        self._plug()
                    except OSError as exc:
                        log.error("galvo pty replug failed", extra={"error": str(exc)})
                        time.sleep(0.1)
                    buf = b""
                else:
                    time.sleep(0.01)
                continue
            self.device.tick()  # the controller's watchdog timer runs whether or not the host talks
            try:
                r, _, _ = select.select([fd], [], [], 0.05)
                if not r:
                    continue
                data = os.read(fd, 4096)
            except (OSError, ValueError):
                # unplugged under us, or EIO: no process holds the port open (the host is gone)
                time.sleep(0.05)
                continue
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._answer(line)
            if len(buf) > 4096:
                buf = b""  # garbage without newline: drop it as the controller's buffer would overflow

    def _answer(self, line: bytes) -> None:
        reply = self.device.handle_line(line)
        command = line.split(b"*", 1)[0].decode("ascii", "replace")
        fault = self.faults.take("galvo", command)
        if fault is not None:
            if fault.kind == "drop":
                log.info("galvo fault: reply dropped", extra={"command": command})
                return
            if fault.kind == "delay":
                time.sleep(float(fault.params.get("seconds", 1.0)))
        with self._fd_lock:
            fd = self._master
        if fd < 0:
            return
        try:
            self._write_paced(fd, reply)
        except OSError:
            pass

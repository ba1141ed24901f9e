"""`thz sim scanner`: run the device emulators; the first stdout line is the endpoints as JSON."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading

import click

from thz.cli import EXIT_DEVICE, EXIT_USAGE, ThzError


@click.command("scanner")
@click.option("--seed", type=int, default=None, help="simulator seed (default: sim.seed of the config)")
@click.option("--pty-link", type=click.Path(dir_okay=False), default=None,
              help="stable symlink to the galvo pty (default: a fresh temp dir)/galvo")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="receiver TCP port on 127.0.0.1 (0 = any free port)")
@click.option("--baudrate", type=int, default=None, help="galvo reply pacing (default: acquisition.galvo_baudrate)")
@click.option("--backdoor", "backdoor_endpoint", default="tcp://127.0.0.1:*", show_default=True,
              help="ZMQ REP endpoint of the control backdoor (loopback only)")
@click.option("--realtime/--fast", default=True, show_default=True,
              help="pace frames at the slow-axis rate, or deliver each as soon as it is computed")
@click.option("--scanner-json", default=None, help="scanner section as JSON (overrides the config's)")
@click.option("--sim-json", default=None, help="sim section as JSON (overrides the config's)")
@click.option("--exit-with-parent/--no-exit-with-parent", default=False,
              help="stop when the process that started this one exits")
@click.pass_obj
def scanner(obj, seed, pty_link, port, baudrate, backdoor_endpoint, realtime, scanner_json, sim_json,
            exit_with_parent) -> None:
    """Run the virtual scanner's galvo (pty) and receiver (SCPI over TCP) until SIGINT/SIGTERM."""
    from pydantic import ValidationError

    from sim.config import SimConfig
    from sim.emulators.server import ScannerEmulator
    from thzcore.scanner import ScannerConfig

    try:
        settings = obj.settings
        scanner_cfg = ScannerConfig.model_validate_json(scanner_json) if scanner_json else settings.scanner
        sim_cfg = SimConfig.model_validate_json(sim_json) if sim_json else settings.sim
    except ValidationError as exc:
        raise ThzError(f"bad --scanner-json/--sim-json: {exc}", EXIT_USAGE) from None
    parent = os.getppid()
    try:
        emu = ScannerEmulator(scanner_cfg, sim_cfg, sim_cfg.seed if seed is None else seed, pty_link=pty_link,
                              baudrate=baudrate or settings.acquisition.galvo_baudrate, receiver_port=port,
                              backdoor_endpoint=backdoor_endpoint, realtime=realtime)
    except (OSError, ValueError) as exc:
        raise ThzError(f"cannot start the emulator: {exc}", EXIT_DEVICE) from None
    stop = threading.Event()

    def _on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    ends = emu.start()
    sys.stdout.write(json.dumps(ends) + "\n")
    sys.stdout.flush()
    try:
        while not stop.is_set() and not emu.stopped.is_set():
            stop.wait(0.2)
            if exit_with_parent and os.getppid() != parent:
                break
    finally:
        emu.stop()

"""Device emulators of the virtual scanner: galvo on a pty, receiver as an SCPI socket server, JSON backdoor.

`ScannerEmulator` (sim.emulators.server) runs them in-process; `thz sim scanner` runs them as a process,
which `SimScanner` (sim.emulators.client) starts and drives through its backdoor.
"""
from sim.emulators.server import ScannerEmulator

__all__ = ["ScannerEmulator"]

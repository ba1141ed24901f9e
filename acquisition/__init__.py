"""acquisition: galvo (serial) and receiver (VISA/SCPI) drivers, the acquisition daemon, `recover` for HDF5 recordings
(the recording format itself is the kernel's: thzcore.recording).

Public names are imported on first use so that `pipeline.settings` (which imports acquisition.config)
stays light:

    AcquisitionDaemon, RunResult          acquisition.daemon
    ScannerSession                        acquisition.session
    grab_frames                           acquisition.grab
    recover                               acquisition.recover
    GalvoController / Receiver            acquisition.galvo / acquisition.receiver
"""
from __future__ import annotations

from thzcore.lazy import lazy_exports

_LAZY = {
    "AcquisitionDaemon": "acquisition.daemon", "RunResult": "acquisition.daemon",
    "ScannerSession": "acquisition.session", "grab_frames": "acquisition.grab",
    "recover": "acquisition.recover",
    "GalvoController": "acquisition.galvo", "Receiver": "acquisition.receiver",
    "AcquisitionConfig": "acquisition.config",
}
__getattr__, __all__ = lazy_exports(__name__, _LAZY)

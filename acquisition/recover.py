"""`thz recover`: rewrite a recording left by a crash as a closed file holding every complete frame."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from thzcore.h5clear import clear_consistency_flags, extend_eoa
from thzcore.logs import get_logger
from thzcore.recording import (DATA_FIELDS, GAP_FIELDS, RecordingError, create_private, entry_attrs, finish_layout,
                               frame_count, instrument_info, iso_time, make_layout)

log = get_logger(__name__)


@dataclass
class RecoverResult:
    path: Path
    frames: int
    dropped: int
    status_before: str
    backup: Path | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "frames": self.frames, "dropped": self.dropped,
                "status_before": self.status_before, "backup": str(self.backup) if self.backup else None}


def _open_crashed(path: Path) -> h5py.File:
    """Open a crash-left file read-only, never in SWMR mode: an SWMR reader of a file whose writer is dead
    retries a torn metadata block for many minutes (it waits for a writer to finish it; seen with a kill -9
    in tests/robustness/test_kill9.py), a plain reader fails at once. A file HDF5 refuses is repaired the
    way `h5clear` does and opened once more: its "open for write" flags cleared (`h5clear -s`), an
    end-of-file address short of the file extended to its size (`h5clear --increment`; thzcore.h5clear)."""
    repairs = {"already open for write": (clear_consistency_flags, "cleared the open-for-write flags a killed "
                                                                   "writer left"),
               "addr overflow": (extend_eoa, "extended the end-of-file address a killed writer left short")}
    errors: list[str] = []
    while True:
        try:
            f = h5py.File(path, "r")
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a superblock HDF5 cannot decode
            errors.append(" ".join(str(exc).split()))
        else:
            try:
                if "entry" in list(f.keys()):  # a recording's group (a foreign file is told so by recover)
                    f["entry"]                 # its header must be readable
                return f
            except (KeyError, OSError, RuntimeError, ValueError) as exc:   # opened, its metadata did not
                f.close()
                errors.append(" ".join(str(exc).split()))
        fix = next((k for k in repairs if k in errors[-1]), None)
        if fix is None:
            break
        repair, what = repairs.pop(fix)
        if not repair(path):
            break
        log.warning(what, extra={"file": str(path)})
    raise RecordingError(f"{path}: HDF5 cannot open the file ({errors[-1]}); nothing can be recovered")


def recover(path: str | Path, keep_original: bool = True) -> RecoverResult:
    """Rewrite a crash-left recording as a closed file holding every complete, readable frame.

    The original is kept as `<name>.crashed` (keep_original) or removed. A file already closed is
    left untouched.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"recording {str(path)!r} does not exist")
    with _open_crashed(path) as f:
        for name in ("entry/data/count", "entry/data/complete", "entry/gaps", "entry/instrument/galvo",
                     "entry/instrument/receiver"):
            if name not in f:
                raise RecordingError(f"{path} is not a thz-face recording (no /{name})")
        n, size = frame_count(f)  # a count outside 0..rows (a damaged file) is refused, never reported
        attrs = entry_attrs(f["entry"])
        status = str(attrs.get("status", ""))
        if status in ("closed", "recovered", "failed", "interrupted"):
            return RecoverResult(path, n, 0, status, None)
        d = f["entry/data"]
        complete = d["complete"][:size]
        idx = [i for i in range(size) if complete[i] == 1]
        shape = tuple(d["if_samples"].shape[1:])
        tmp = path.with_name(path.name + ".recovering")
        if tmp.exists():
            tmp.unlink()
        create_private(tmp)
        kept = 0
        with h5py.File(tmp, "w", libver="latest") as out:
            make_layout(out, shape, {**attrs, "status": "recovering"}, len(idx), instrument_info(f))
            od = out["entry/data"]
            for i in idx:
                try:
                    row = {name: d[name][i] for name in DATA_FIELDS if name in d}  # older files lack some
                except (OSError, ValueError) as exc:  # a chunk the crash left unreadable
                    log.warning("frame unreadable, dropped", extra={"index": i, "error": str(exc)})
                    continue
                for name, v in row.items():
                    od[name][kept] = v
                kept += 1
            for name in DATA_FIELDS:
                od[name].resize(kept, axis=0)
            od["count"][0] = kept
            for name in GAP_FIELDS:
                src = f["entry/gaps"][name][:]
                out["entry/gaps"][name].resize(src.shape[0], axis=0)
                out["entry/gaps"][name][:] = src
            finish_layout(out)  # meta and reasons as variable-length strings, as in a closed file
            e = out["entry"]
            e.attrs["status"] = "recovered"
            e.attrs["status_before_recovery"] = status
            e.attrs["recovered_time"] = iso_time(time.time())
            e.attrs["frames"] = kept
            e.attrs["frames_dropped_in_recovery"] = len(idx) - kept
    backup = None
    if keep_original:
        backup = path.with_name(path.name + ".crashed")
        os.replace(path, backup)
    os.replace(tmp, path)
    os.chmod(path, 0o600)
    return RecoverResult(path, kept, len(idx) - kept, status, backup)

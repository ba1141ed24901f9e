"""HDF5 session recordings in NeXus form (SWMR, flushed per frame) and `recover` for files left by a crash.

Layout of one session file, recording version 2 (every dataset is created before SWMR writing starts;
NeXus base classes NXroot / NXentry / NXinstrument / NXdata; `units` on every numeric dataset, "1"
for counts, ids and flags, times in s since the Unix epoch with `start` = 1970-01-01T00:00:00Z):

    /                       NX_class=NXroot, default=entry, file_name, file_time, creator
    /entry                  NXentry, default=data; attributes: recording_version, session_id, scanner_id, status
                            (running | closed | failed | interrupted | recovered), config_json, config_sha256,
                            calibration_id, software_version, sim_seed (-1 = real hardware), frames
      start_time, end_time  NX_DATE_TIME datasets (ISO 8601, UTC); end_time written when the file is closed
    /entry/instrument       NXinstrument
      galvo                 NXpositioner: name, idn (*IDN? reply), resource (serial port)
      receiver              NXdetector: name, idn, resource (VISA resource)
    /entry/data             NXdata, signal=if_samples, axes=[frame_id, ., ., .], frame_id_indices=0,
                            t_acquired_indices=0
      if_samples            int16   (N, lines, chirps, samples)  counts, one chunk per frame, gzip 1 + shuffle
      feedback_x            float32 (N, lines, chirps)           m at the standoff plane, gzip 1 + shuffle
      feedback_y            float32 (N, lines)                   m
      direction             int8    (N, lines)                   +1 forward, -1 backward
      frame_id, seq         int64   (N,)                         daemon frame id, wire sequence number
      instrument_frame_no   int64   (N,)                         the receiver's own frame counter
      t_acquired            float64 (N,)                         frame start, s (Unix time)
      t_complete            float64 (N,)                         scan complete (last line digitized), s (Unix
                                                                 time); 0 when the source did not stamp it
      meta                  string  (N,)                         the frame's meta as JSON (calibration_id,
                                                                 session_id, sim truth, ...), UTF-8
      complete              uint8   (N,)                         1 once every dataset of the frame is written
      count                 int64   (1,)                         frames written (updated last, per frame)
    /entry/gaps             NXcollection: after_frame_id, resume_frame_id, t_start, t_end, reason (string)

SWMR cannot write variable-length data, so while a session is written `meta` and `reason` are
fixed-length bytes (META_LEN, REASON_LEN; gzip-compressed, so the padding costs nothing); closing the
file (and `thz recover`) rewrites them as variable-length UTF-8 strings. Readers take both, and read
version 1 files (start_time an attribute, no units, uncompressed); a file of a newer version is refused.

Datasets grow by `grow` frames at a time; the writer flushes the frame's data, then sets `complete`
and `count` and flushes again, so after a crash every frame with complete == 1 is whole.

A file is created as `<name>.creating`, its whole layout written and flushed, and only then linked
to `<name>` (atomic, and never over an existing file): a crash during creation leaves either no
recording or one that opens (a kill -9 in the middle of h5py's creation used to leave a 48-byte file
nothing could open). A leftover `.creating` file holds no frame and may be deleted.

The one format: `Recorder` writes it (the acquisition daemon, `write_recording` for hand-made files),
`read_recording` loads every complete frame, `iter_frames` streams them (processing, offline runs),
and acquisition's `recover` repairs a file left by a crash.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.provenance import software_version

log = get_logger(__name__)


class RecordingError(ValueError):
    """A file that is not a readable thz-face recording; the message names the file and what is missing."""

RECORDING_VERSION = 2  # 1: start_time an attribute, no units, no compression, fixed-length meta
REASON_LEN = 160
META_LEN = 4096
EPOCH = "1970-01-01T00:00:00Z"  # the `start` of every time dataset (NeXus NX_TIME offsets)
# lossless compression of the large per-frame blocks, h5py's built-in filters (measured in docs/protocols.md:
# gzip 1 + shuffle keeps 60 % of a simulated frame's bytes in ~0.3 s of one core, lzf 71 % in ~0.17 s)
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
    "none": {},
}
STRINGS_COMPRESSION = COMPRESSIONS["gzip"]  # meta and reasons: padding and JSON, small either way
COMPRESSED = ("if_samples", "feedback_x")
UNITS = {"if_samples": "counts", "feedback_x": "m", "feedback_y": "m", "direction": "1", "frame_id": "1", "seq": "1",
         "instrument_frame_no": "1", "t_acquired": "s", "t_complete": "s", "complete": "1", "count": "1",
         "after_frame_id": "1", "resume_frame_id": "1", "t_start": "s", "t_end": "s"}
LONG_NAMES = {"if_samples": "IF samples of each chirp (ADC counts)", "feedback_x": "fast-axis position feedback",
              "feedback_y": "slow-axis position feedback", "direction": "line direction (+1 forward, -1 backward)",
              "t_acquired": "frame start", "t_complete": "scan complete (last line digitized)"}
DATE_TIMES = ("start_time", "end_time")  # NXentry fields: datasets here, attributes in version 1 files
DATA_FIELDS = ("if_samples", "feedback_x", "feedback_y", "direction", "frame_id", "seq", "instrument_frame_no",
               "t_acquired", "t_complete", "meta", "complete")
GAP_FIELDS = ("after_frame_id", "resume_frame_id", "t_start", "t_end", "reason")
CREATING_SUFFIX = ".creating"


def iso_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def create_private(path: Path) -> None:
    """Create an empty file readable and writable by its owner only (0600); refuses to overwrite."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _data_specs(shape: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], str]]:
    lines, chirps, samples = shape
    return {"if_samples": ((lines, chirps, samples), "<i2"), "feedback_x": ((lines, chirps), "<f4"),
            "feedback_y": ((lines,), "<f4"), "direction": ((lines,), "|i1"), "frame_id": ((), "<i8"),
            "seq": ((), "<i8"), "instrument_frame_no": ((), "<i8"), "t_acquired": ((), "<f8"),
            "t_complete": ((), "<f8"), "meta": ((), f"S{META_LEN}"), "complete": ((), "|u1")}


def _units(ds: h5py.Dataset, name: str) -> None:
    if name in UNITS:
        ds.attrs["units"] = UNITS[name]
    if name in LONG_NAMES:
        ds.attrs["long_name"] = LONG_NAMES[name]
    if UNITS.get(name) == "s":
        ds.attrs["start"] = EPOCH


def _put_text(group: h5py.Group, name: str, value: str) -> None:
    """A scalar string dataset (created, or replaced)."""
    if name in group:
        del group[name]
    group.create_dataset(name, data=str(value), dtype=h5py.string_dtype())


def make_layout(f: h5py.File, shape: tuple[int, int, int], attrs: dict[str, Any], capacity: int,
                instrument: dict[str, dict[str, Any]] | None = None, compression: str = "gzip") -> None:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r}: use one of {sorted(COMPRESSIONS)}")
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = "entry"
    f.attrs["file_name"] = os.path.basename(f.filename).removesuffix(CREATING_SUFFIX).removesuffix(".recovering")
    f.attrs["file_time"] = iso_time(time.time())
    f.attrs["creator"] = software_version()
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    for k, v in attrs.items():
        if k in DATE_TIMES:
            _put_text(entry, k, v)
        elif k != "recording_version":
            entry.attrs[k] = v
    entry.attrs["recording_version"] = RECORDING_VERSION
    inst = entry.create_group("instrument")
    inst.attrs["NX_class"] = "NXinstrument"
    for device, nx_class in (("galvo", "NXpositioner"), ("receiver", "NXdetector")):
        g = inst.create_group(device)
        g.attrs["NX_class"] = nx_class
        _put_text(g, "name", device)
        for k, v in (instrument or {}).get(device, {}).items():
            _put_text(g, k, v)
    data = entry.create_group("data")
    data.attrs["NX_class"] = "NXdata"
    data.attrs["signal"] = "if_samples"
    data.attrs["axes"] = ["frame_id", ".", ".", "."]
    data.attrs["frame_id_indices"] = 0
    data.attrs["t_acquired_indices"] = 0
    for name, (inner, dt) in _data_specs(shape).items():
        ds = data.create_dataset(name, shape=(capacity, *inner), maxshape=(None, *inner), dtype=dt,
                                 chunks=(1, *inner) if inner else (max(64, capacity),),
                                 fillvalue=b"" if dt.startswith("S") else 0,
                                 **(COMPRESSIONS[compression] if name in COMPRESSED else
                                    STRINGS_COMPRESSION if dt.startswith("S") else {}))
        _units(ds, name)
    _units(data.create_dataset("count", data=np.zeros(1, "<i8"), dtype="<i8"), "count")
    gaps = entry.create_group("gaps")
    gaps.attrs["NX_class"] = "NXcollection"
    for name, dt in (("after_frame_id", "<i8"), ("resume_frame_id", "<i8"), ("t_start", "<f8"), ("t_end", "<f8"),
                     ("reason", f"S{REASON_LEN}")):
        _units(gaps.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(64,)), name)


def _as_vlen_strings(group: h5py.Group, name: str) -> None:
    """Rewrite a fixed-length bytes dataset (what SWMR can write) as variable-length UTF-8 strings."""
    if name not in group or group[name].dtype.kind != "S":
        return
    old = group[name]
    # a row is a C string: it ends at its first NUL. A writer killed inside a row leaves text, NULs and then
    # older bytes (a torn row), which a variable-length string cannot hold; the text before the NUL is kept
    # (not valid JSON: frame_meta_from_bytes reads it as no meta, as it did before the rewrite)
    values = [bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace") for v in old[:]]
    attrs = dict(old.attrs)
    del group[name]
    new = group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype(),
                               maxshape=(None,), chunks=(max(1, min(len(values), 64)),), **STRINGS_COMPRESSION)
    for k, v in attrs.items():
        new.attrs[k] = v


def finish_layout(f: h5py.File) -> None:
    """What a closed file has beyond the SWMR layout: meta and gap reasons as variable-length strings
    (a file opened without SWMR, after writing)."""
    _as_vlen_strings(f["entry/data"], "meta")
    _as_vlen_strings(f["entry/gaps"], "reason")


def instrument_info(f: h5py.File) -> dict[str, dict[str, Any]]:
    """{device: {field: value}} of /entry/instrument: datasets (version 2) or attributes (version 1)."""
    out: dict[str, dict[str, Any]] = {}
    if "entry/instrument" not in f:
        return out
    for device, g in f["entry/instrument"].items():
        if not isinstance(g, h5py.Group):
            continue
        info = {k: _decode(v) for k, v in g.attrs.items() if k != "NX_class"}
        info.update({k: _decode(ds[()]) for k, ds in g.items() if isinstance(ds, h5py.Dataset) and ds.shape == ()})
        info.pop("name", None)
        out[device] = info
    return out


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else (v.item() if isinstance(v, np.generic) else v)


def frame_meta_bytes(frame: RawFrame) -> bytes:
    """The frame's meta as UTF-8 JSON of at most META_LEN bytes. Keys that do not fit are left out
    (largest first) and named under `meta_dropped`, so a recording never holds truncated JSON."""
    meta = {k: v for k, v in frame.meta.items() if k != "t_complete"}  # t_complete has its own dataset
    blob = json.dumps(meta, separators=(",", ":"), default=str).encode()
    dropped: list[str] = []
    while len(blob) > META_LEN and meta:
        big = max(meta, key=lambda k: len(json.dumps(meta[k], default=str)))
        dropped.append(big)
        del meta[big]
        blob = json.dumps({**meta, "meta_dropped": dropped}, separators=(",", ":"), default=str).encode()
    if dropped:
        log.warning("frame meta too long for the recording; keys left out",
                    extra={"frame_id": frame.frame_id, "dropped": dropped})
    return blob


def frame_meta_from_bytes(raw: bytes | str) -> dict[str, Any]:
    """Inverse of frame_meta_bytes (fixed-length bytes, or a closed file's string); {} for an empty or unreadable
    entry."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        m = json.loads(raw.rstrip(b"\0").decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


class Recorder:
    """Writes one session: `write(frame, seq)` per frame, `gap(...)` per outage, `close(status)` at the end."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int], attrs: dict[str, Any],
                 grow: int = 16, instrument: dict[str, dict[str, Any]] | None = None,
                 compression: str = "gzip") -> None:
        self.path = Path(path)
        self.shape = tuple(shape)
        self.grow = max(1, int(grow))
        self.count = 0
        self.n_gaps = 0
        full = {"status": "running", "start_time": iso_time(time.time()), "software_version": software_version(), **attrs}
        if "config_json" in full:
            full["config_sha256"] = hashlib.sha256(str(full["config_json"]).encode()).hexdigest()
        if self.path.exists():
            raise FileExistsError(f"recording {self.path} already exists")
        creating = self.path.with_name(self.path.name + CREATING_SUFFIX)
        if creating.exists():
            creating.unlink()  # left by a crash during an earlier creation: it never held a frame
        create_private(creating)
        self._f = h5py.File(creating, "w", libver="latest")
        try:
            make_layout(self._f, self.shape, full, self.grow, instrument, compression)
        except BaseException:
            self._f.close()
            creating.unlink()
            raise
        self._f.flush()
        # the recording appears whole or not at all: link() is atomic and, unlike rename, never replaces an
        # existing file; the open handle follows the inode
        os.link(creating, self.path)
        os.unlink(creating)
        self._f.swmr_mode = True  # from here on: no new objects or attributes, readers may follow along
        self._d = self._f["entry/data"]
        self._g = self._f["entry/gaps"]
        self._capacity = self.grow
        self._instrument_attrs: dict[str, dict[str, Any]] = {}
        os.chmod(self.path, 0o600)

    @classmethod
    def create(cls, directory: str | Path, scanner_id: str, session_id: str, shape: tuple[int, int, int],
               attrs: dict[str, Any], grow: int = 16,
               instrument: dict[str, dict[str, Any]] | None = None, compression: str = "gzip") -> "Recorder":
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in scanner_id)
        return cls(d / f"{safe_id}_{stamp}_{session_id}.h5", shape,
                   {"session_id": session_id, "scanner_id": scanner_id, **attrs}, grow, instrument, compression)

    def set_instrument(self, device: str, **attrs: Any) -> None:
        """Instrument facts learnt after creation: written as fields of its group when the file is closed."""
        self._instrument_attrs.setdefault(device, {}).update(attrs)

    def write(self, frame: RawFrame, seq: int, instrument_frame_no: int = -1) -> int:
        """Append one frame; returns its index. Flushes so a crash keeps it."""
        if frame.shape != self.shape:
            raise ValueError(f"frame {frame.frame_id} has shape {frame.shape}, this recording holds {self.shape}")
        i = self.count
        if i >= self._capacity:
            self._capacity += self.grow
            for name in DATA_FIELDS:
                self._d[name].resize(self._capacity, axis=0)
        d = self._d
        d["if_samples"][i] = frame.if_samples
        d["feedback_x"][i] = frame.feedback_x
        d["feedback_y"][i] = frame.feedback_y
        d["direction"][i] = frame.direction
        d["frame_id"][i] = frame.frame_id
        d["seq"][i] = seq
        d["instrument_frame_no"][i] = instrument_frame_no
        d["t_acquired"][i] = frame.t_acquired
        t_complete = frame.meta.get("t_complete")
        d["t_complete"][i] = float(t_complete) if isinstance(t_complete, (int, float)) else 0.0
        d["meta"][i] = frame_meta_bytes(frame)
        self._f.flush()
        d["complete"][i] = 1
        d["count"][0] = i + 1
        self._f.flush()
        self.count = i + 1
        return i

    def gap(self, after_frame_id: int, resume_frame_id: int, t_start: float, t_end: float, reason: str) -> None:
        g, j = self._g, self.n_gaps
        for name in GAP_FIELDS:
            g[name].resize(j + 1, axis=0)
        g["after_frame_id"][j] = after_frame_id
        g["resume_frame_id"][j] = resume_frame_id
        g["t_start"][j] = t_start
        g["t_end"][j] = t_end
        g["reason"][j] = reason.encode("utf-8", "replace")[:REASON_LEN]
        self._f.flush()
        self.n_gaps = j + 1

    def close(self, status: str = "closed") -> None:
        """Trim to the frames written, leave SWMR, and stamp the end attributes."""
        if self._f is None:
            return
        for name in DATA_FIELDS:
            self._d[name].resize(self.count, axis=0)
        self._f.flush()
        self._f.close()
        self._f = None
        with h5py.File(self.path, "r+") as f:
            e = f["entry"]
            e.attrs["status"] = status
            _put_text(e, "end_time", iso_time(time.time()))
            e.attrs["frames"] = self.count
            for device, attrs in self._instrument_attrs.items():
                for k, v in attrs.items():
                    _put_text(e["instrument"][device], k, v)
            finish_layout(f)

    @property
    def closed(self) -> bool:
        return self._f is None


@dataclass
class Recording:
    """A recording read back: arrays of the complete frames and the entry attributes."""

    path: Path
    attrs: dict[str, Any]
    data: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]

    @property
    def frames(self) -> int:
        return int(self.data["frame_id"].shape[0])

    def raw_frame(self, i: int) -> RawFrame:
        return _frame_from_row(self.attrs, {name: values[i] for name, values in self.data.items()})


def _frame_from_row(attrs: dict[str, Any], row: dict[str, Any]) -> RawFrame:
    """One frame of /entry/data (a dict of its datasets' rows) with the entry attributes as a RawFrame."""
    meta: dict[str, Any] = {"calibration_id": str(attrs.get("calibration_id", ""))}
    if "meta" in row:
        raw = row["meta"]
        meta.update(frame_meta_from_bytes(raw if isinstance(raw, str) else bytes(raw)))
    if "t_complete" in row and row["t_complete"] > 0:
        meta["t_complete"] = float(row["t_complete"])
    return RawFrame(int(row["frame_id"]), float(row["t_acquired"]), str(attrs.get("scanner_id", "")),
                    row["if_samples"], row["feedback_x"], row["feedback_y"], row["direction"], meta)


def entry_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """The entry's attributes, with its start_time / end_time (datasets since version 2) among them."""
    out = {k: _decode(v) for k, v in obj.attrs.items()}
    if isinstance(obj, h5py.Group):
        for name in DATE_TIMES:
            if name in obj and isinstance(obj[name], h5py.Dataset):
                out[name] = _decode(obj[name][()])
    return out


def recording_version(f: h5py.File) -> int:
    """The layout version of a recording (1 for files written before the attribute existed)."""
    v = f["entry"].attrs.get("recording_version", 1) if "entry" in f else 1
    try:
        return int(v)
    except (TypeError, ValueError):
        raise RecordingError(f"{f.filename}: recording_version {v!r} is not a number: the file is damaged") from None


def _open(path: str | Path, swmr: bool) -> h5py.File:
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"recording {str(p)!r} does not exist")
    try:
        f = h5py.File(p, "r", swmr=swmr)
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a superblock HDF5 cannot decode
        raise RecordingError(f"{p}: HDF5 cannot open the file ({' '.join(str(exc).split())})") from None
    if "entry/data/if_samples" not in f or "entry/data/count" not in f or "entry/data/complete" not in f:
        f.close()
        raise RecordingError(f"{p} is not a thz-face recording (no /entry/data/if_samples and count)")
    try:
        v = recording_version(f)
    except RecordingError:
        f.close()
        raise
    if v > RECORDING_VERSION:
        f.close()
        raise RecordingError(f"{p}: recording version {v}, newer than this thz-face reads ({RECORDING_VERSION}); "
                             "update thz-face to read it")
    return f


def frame_count(f: h5py.File) -> tuple[int, int]:
    """(frames written, rows allocated) of /entry/data, checked: 0 <= count <= rows, else RecordingError."""
    d = f["entry/data"]
    try:
        n = int(d["count"][0])
        rows = int(d["complete"].shape[0])
    except (IndexError, ValueError, TypeError, OSError, KeyError):
        raise RecordingError(f"{f.filename}: /entry/data/count is unreadable") from None
    if not 0 <= n <= rows:
        raise RecordingError(f"{f.filename}: /entry/data/count = {n} outside 0..{rows} (the rows the file "
                             "holds): the file is damaged")
    return n, rows


def read_recording(path: str | Path, swmr: bool = False) -> Recording:
    """Load every complete frame of a recording (swmr=True also reads a file still being written)."""
    with _open(path, swmr) as f:
        d = f["entry/data"]
        n, _ = frame_count(f)
        ok = np.flatnonzero(d["complete"][:n] == 1)
        # files written before t_complete / meta existed lack them
        data = {name: d[name][:n][ok] for name in DATA_FIELDS if name != "complete" and name in d}
        gaps = {name: f["entry/gaps"][name][:] for name in GAP_FIELDS}
        gaps["reason"] = np.array([r.decode("utf-8", "replace") for r in gaps["reason"]], dtype=object)
        return Recording(Path(path), entry_attrs(f["entry"]), data, gaps)


def iter_frames(path: str | Path, start: int = 0, stop: int | None = None, swmr: bool = True) -> Iterator[RawFrame]:
    """Yield the complete frames start..stop of a recording one at a time (a session may not fit in memory).

    A frame the writer had not finished (complete == 0, a crash mid-frame) is skipped with a warning.
    """
    with _open(path, swmr) as f:
        d = f["entry/data"]
        attrs = entry_attrs(f["entry"])
        n, _ = frame_count(f)
        complete = d["complete"][:n]
        names = [name for name in DATA_FIELDS if name != "complete" and name in d]
        for i in range(start, n if stop is None else min(stop, n)):
            if not complete[i]:
                log.warning("incomplete frame skipped", extra={"file": str(path), "index": i})
                continue
            yield _frame_from_row(attrs, {name: d[name][i] for name in names})


@dataclass
class RecordingIndex:
    """What a recording holds without its sample blocks: the entry attributes, the frame shape, and the
    frame id, file index and meta of every complete frame (cheap to read for a long session)."""

    path: Path
    attrs: dict[str, Any]
    shape: tuple[int, int, int]
    frame_ids: np.ndarray   # (n,) int64, complete frames in file order
    indices: np.ndarray     # (n,) int64, their rows in /entry/data (for iter_frames' start and stop)
    metas: list[dict[str, Any]]

    def first_last(self) -> tuple[int, int] | None:
        return None if not len(self.frame_ids) else (int(self.frame_ids.min()), int(self.frame_ids.max()))


def recording_index(path: str | Path, swmr: bool = False) -> RecordingIndex:
    """The RecordingIndex of a recording (RecordingError for a file that is not one)."""
    with _open(path, swmr) as f:
        d = f["entry/data"]
        n, _ = frame_count(f)
        ok = np.flatnonzero(d["complete"][:n] == 1)
        ids = np.asarray(d["frame_id"][:n], dtype=np.int64)[ok]
        metas: list[dict[str, Any]] = []
        if "meta" in d:
            raw = d["meta"][:n]
            metas = [frame_meta_from_bytes(raw[i] if isinstance(raw[i], str) else bytes(raw[i])) for i in ok]
        else:
            metas = [{} for _ in ok]
        shape = tuple(int(v) for v in d["if_samples"].shape[1:])
        return RecordingIndex(Path(path), entry_attrs(f["entry"]), shape, ids, ok.astype(np.int64), metas)


def write_recording(path: str | Path, frames: list[RawFrame], attrs: dict[str, Any] | None = None) -> Path:
    """Write `frames` as one closed recording (tests and hand-made files); the session's attrs on /entry."""
    if not frames:
        raise ValueError("write_recording needs at least one frame")
    rec = Recorder(path, frames[0].shape, {"scanner_id": frames[0].scanner_id, **(attrs or {})}, grow=len(frames))
    try:
        for seq, frame in enumerate(frames):
            rec.write(frame, seq)
    finally:
        rec.close()
    return rec.path

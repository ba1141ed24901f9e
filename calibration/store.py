"""The versioned calibration store: one JSON file per record, a `current` pointer, validation on load.

Layout under the store root:
    records/<record_id>.json     immutable records (written once, atomically)
    current.json                 {"current": {kind: record_id}, "processing": record_id, ...}

A record's `content_hash` is sha256 over its canonical JSON (sorted keys) without `record_id`,
`content_hash` and the embedded processing calibration's `calibration_id` (which repeats the
record id); the id is `<kind>-<UTC time>-<hash[:8]>`. Loading re-hashes: an edited file is
reported as tampered, never used. A record for another scanner or older than `max_age_days` is
reported as mismatched or stale; `processing_calibration` refuses such records unless told to
accept a stale one, and then it says so in the log.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calibration.values import Check, Measured
from processing.calibration_model import ProcessingCalibration
from thzcore.logs import get_logger

log = get_logger(__name__)

SCHEMA_VERSION = 1
KINDS: tuple[str, ...] = ("beam", "focus", "snr", "phase", "fov", "exposure")
Kind = Literal["beam", "focus", "snr", "phase", "fov", "exposure"]
_ID_RE = re.compile(r"^[a-z]+-\d{8}T\d{6}Z-[0-9a-f]{8}$")


class CalibrationError(RuntimeError):
    """A calibration record cannot be used; `problems` lists why."""

    def __init__(self, message: str, problems: list["Problem"] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: Literal["missing", "unreadable", "tampered", "scanner_mismatch", "stale", "out_of_tolerance", "future"]
    message: str


class CalibrationRecord(BaseModel):
    """One calibration run: what was measured, fitted (value +- 1 sigma), and how it compares with the spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = SCHEMA_VERSION
    record_id: str = ""
    kind: Kind
    created: str = Field(description="ISO 8601 UTC time of the measurement")
    scanner_id: str = Field(min_length=1)
    software_version: str = ""
    source: Literal["sim", "hardware"] = "sim"
    values: dict[str, Measured] = Field(default_factory=dict, description="every fitted value with its uncertainty")
    checks: list[Check] = Field(default_factory=list, description="pass/fail per item against the tolerances")
    tables: dict[str, list[dict[str, float]]] = Field(default_factory=dict, description="e.g. lag vs amplitude")
    processing: ProcessingCalibration | None = Field(
        None, description="the values the processor applies from this record on (its calibration_id = record_id)")
    config: dict[str, Any] = Field(default_factory=dict, description="the scanner/processing/calibration config used")
    meta: dict[str, Any] = Field(default_factory=dict, description="provenance: sim seed, truth, report path")
    supersedes: str | None = Field(None, description="the record of this kind that was current before")
    content_hash: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def created_dt(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def canonical(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d.pop("record_id")
        d.pop("content_hash")
        if d.get("processing") is not None:
            d["processing"].pop("calibration_id", None)
        return d

    def compute_hash(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def sealed(self) -> "CalibrationRecord":
        """This record with its hash, id and the processing calibration's id filled in."""
        h = self.compute_hash()
        stamp = self.created_dt.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        rid = f"{self.kind}-{stamp}-{h[:8]}"
        upd: dict[str, Any] = {"record_id": rid, "content_hash": h}
        if self.processing is not None:
            upd["processing"] = self.processing.model_copy(update={"calibration_id": rid})
        return self.model_copy(update=upd)


def software_version() -> str:
    """Package version, plus the git commit when running from a checkout (`0.1.0+g1a2b3c4`)."""
    try:
        v = metadata.version("thz-face")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        v = "0+unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=2, check=True).stdout.strip()
        if sha:
            v += f"+g{sha}"
    except (OSError, subprocess.SubprocessError):
        pass
    return v


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # not personal data
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CalibrationStore:
    """Records of one or more scanners in a directory; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def pointer_path(self) -> Path:
        return self.root / "current.json"

    def path_of(self, record_id: str) -> Path:
        if not _ID_RE.match(record_id):
            raise ValueError(f"record id {record_id!r} is not of the form <kind>-<YYYYmmddTHHMMSSZ>-<8 hex>")
        return self.records_dir / f"{record_id}.json"

    # ---- writing
    def write(self, record: CalibrationRecord, make_current: bool = True) -> CalibrationRecord:
        """Seal (hash + id) and store `record`; optionally make it the current one of its kind.

        The current record of the kind becomes `supersedes`. Returns the sealed record.
        """
        ptr = self._read_pointer()
        prev = ptr["current"].get(record.kind)
        rec = record.model_copy(update={"supersedes": prev}).sealed()
        path = self.path_of(rec.record_id)
        if path.exists():
            raise FileExistsError(f"calibration record {rec.record_id} already exists at {path}")
        _atomic_write(path, rec.model_dump_json(indent=2))
        if make_current:
            ptr["current"][rec.kind] = rec.record_id
            if rec.processing is not None:
                ptr["processing"] = rec.record_id
            ptr["updated"] = utc_now().isoformat()
            _atomic_write(self.pointer_path, json.dumps(ptr, indent=2, sort_keys=True))
        log.info("calibration record written", extra={"record_id": rec.record_id, "path": str(path),
                                                      "current": make_current})
        return rec

    # ---- reading
    def _read_pointer(self) -> dict[str, Any]:
        if not self.pointer_path.is_file():
            return {"schema_version": SCHEMA_VERSION, "current": {}, "processing": None}
        try:
            ptr = json.loads(self.pointer_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{self.pointer_path}: unreadable current pointer ({exc}); "
                                   "restore it or re-run the calibrations") from exc
        if not isinstance(ptr, dict) or not isinstance(ptr.get("current"), dict):
            raise CalibrationError(f"{self.pointer_path}: malformed current pointer (no 'current' object)")
        ptr.setdefault("processing", None)
        return ptr

    def current_ids(self) -> dict[str, str]:
        return dict(self._read_pointer()["current"])

    def current_processing_id(self) -> str | None:
        return self._read_pointer()["processing"]

    def load(self, record_id: str) -> CalibrationRecord:
        """Read and verify one record: raises CalibrationError (code unreadable/tampered) when it cannot be trusted."""
        path = self.path_of(record_id)
        if not path.is_file():
            raise CalibrationError(f"calibration record {record_id} not found in {self.records_dir}",
                                   [Problem(code="missing", message=f"{path} does not exist")])
        try:
            rec = CalibrationRecord.model_validate_json(path.read_text())
        except (OSError, ValidationError, ValueError) as exc:
            raise CalibrationError(f"{path}: not a valid calibration record: {exc}",
                                   [Problem(code="unreadable", message=str(exc).splitlines()[0])]) from None
        actual = rec.compute_hash()
        if actual != rec.content_hash or rec.record_id != record_id or not record_id.endswith(actual[:8]):
            msg = (f"{path}: content hash {actual[:16]} does not match the stored {rec.content_hash[:16]} "
                   f"(or the id {rec.record_id} does not match the file); the record was altered and is not used")
            raise CalibrationError(msg, [Problem(code="tampered", message=msg)])
        if rec.processing is not None and rec.processing.calibration_id != rec.record_id:
            msg = f"{path}: embedded processing calibration id {rec.processing.calibration_id} != {rec.record_id}"
            raise CalibrationError(msg, [Problem(code="tampered", message=msg)])
        return rec

    def history(self, kind: str | None = None) -> list[str]:
        """Record ids in the store (of one kind), oldest first (ids sort by time within a kind)."""
        if not self.records_dir.is_dir():
            return []
        ids = sorted(p.stem for p in self.records_dir.glob("*.json") if _ID_RE.match(p.stem))
        return [i for i in ids if kind is None or i.startswith(f"{kind}-")]

    # ---- validation
    @staticmethod
    def validate(record: CalibrationRecord, scanner_id: str, max_age_days: float,
                 now: datetime | None = None) -> list[Problem]:
        """Problems that make `record` unfit for `scanner_id` now (empty list = usable)."""
        now = now or utc_now()
        out: list[Problem] = []
        if record.scanner_id != scanner_id:
            out.append(Problem(code="scanner_mismatch",
                               message=f"record {record.record_id} was measured on scanner {record.scanner_id!r}, "
                                       f"this is {scanner_id!r}"))
        age = now - record.created_dt
        if age > timedelta(days=max_age_days):
            out.append(Problem(code="stale", message=f"record {record.record_id} is {age.total_seconds() / 86400:.1f} "
                                                     f"days old (limit {max_age_days:g} days)"))
        elif age < -timedelta(minutes=5):
            out.append(Problem(code="future", message=f"record {record.record_id} is dated in the future "
                                                      f"({record.created}); check the clock"))
        bad = [c.name for c in record.checks if not c.passed]
        if bad:
            out.append(Problem(code="out_of_tolerance", message=f"record {record.record_id}: out of tolerance: "
                                                                f"{', '.join(bad)}"))
        return out

    def current(self, kind: str) -> CalibrationRecord | None:
        rid = self.current_ids().get(kind)
        return None if rid is None else self.load(rid)

    def status(self, scanner_id: str, max_age_days: float, now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per kind: the current record (if any), pass/fail and its problems."""
        ids = self.current_ids()
        proc = self.current_processing_id()
        rows = []
        for kind in KINDS:
            rid = ids.get(kind)
            row: dict[str, Any] = {"kind": kind, "record_id": rid, "applied_by_processor": rid is not None and rid == proc}
            if rid is None:
                row.update(state="missing", problems=[f"no {kind} calibration; run `thz calibrate {kind}`"])
            else:
                try:
                    rec = self.load(rid)
                except CalibrationError as exc:
                    row.update(state="invalid", problems=[p.message for p in exc.problems] or [str(exc)])
                else:
                    probs = self.validate(rec, scanner_id, max_age_days, now)
                    row.update(created=rec.created, passed=rec.passed,
                               state="ok" if not probs else probs[0].code, problems=[p.message for p in probs],
                               values={k: v.model_dump() for k, v in rec.values.items()},
                               failed=[c.name for c in rec.checks if not c.passed])
            rows.append(row)
        return rows

    def processing_calibration(self, scanner_id: str, max_age_days: float, allow_stale: bool = False,
                               now: datetime | None = None) -> ProcessingCalibration | None:
        """The ProcessingCalibration the processor should apply, or None when none was ever recorded.

        Raises CalibrationError for a tampered, unreadable or other-scanner record, and for a stale
        one unless allow_stale (then a warning names it). Out-of-tolerance records are applied
        (the lag is still the best estimate) with a warning.
        """
        rid = self.current_processing_id()
        if rid is None:
            return None
        rec = self.load(rid)
        probs = self.validate(rec, scanner_id, max_age_days, now)
        blocking = [p for p in probs if p.code in ("scanner_mismatch", "future")
                    or (p.code == "stale" and not allow_stale)]
        if blocking:
            raise CalibrationError(f"calibration {rid} not used: " + "; ".join(p.message for p in blocking)
                                   + ". Re-run `thz calibrate phase` (and `thz calibrate fov`) for this scanner", blocking)
        for p in probs:
            log.warning("calibration used despite a problem", extra={"record_id": rid, "problem": p.code,
                                                                    "detail": p.message})
        if rec.processing is None:  # `current` points at processing records only; a hand-edited pointer may not
            raise CalibrationError(f"calibration {rid} holds no processing values: run `thz calibrate phase`")
        return rec.processing

"""A lab's own recordings into a training set: HDF5 raw recordings + a label sheet -> the manifest layout.

`thz dataset from-recordings RECORDINGS... --labels LABELS.csv --out DIR` processes recordings
(thzcore.recording, any version it reads) with the live processing stage (processing.stage.ProcessingStage:
range gate, de-warp, line phase, the calibration record the recording names, frames_averaged-frame
averages, face ROI with its focus check) and writes what `thz train` reads: THz ROIs as grey PNGs
(dataset.synth.roi_to_png, the synthetic dataset's rule), manifest.csv (thzcore.manifest, the same
columns), dataset.json (provenance: every recording and the label sheet with their sha256) and a
contact sheet.

Label sheet (CSV, header row; one row = one capture of one subject):

    recording,frames,identity,posture,concealed,capture[,split]
    alice_session.h5,0-8,0,front-center,1,0
    alice_session.h5,9-17,0,front-center,0,0

  recording  the file, relative to the label sheet's folder (or absolute); when RECORDINGS are given it
             names one of them (by path or file name)
  frames     frame ids, inclusive: "A-B", "A", or blank for every frame of the recording
  identity   integer >= 0          | blank: taken from the frames' own meta (a simulated recording's
  posture    one of the 5 postures | truth, `thz acquire --sim --identity`), which must agree over the
  concealed  1/0, yes/no, true/false | row's frames
  capture    integer >= 0, the capture index within identity x posture (a concealed and an unconcealed
             capture with the same index are a pair); blank: the next free index of its identity,
             posture and concealment, in sheet order
  split      optional: train | val | test; blank: the synthetic dataset's rule (below)

A recording given on the command line with no row in the sheet (or with no sheet at all) is one row
over all its frames, labelled by its frames' meta.

Images: the row's frames go through the stage in block averaging, so every frames_averaged consecutive
frames (processing.frames_averaged, default 3) make one image; a gap in the frame ids restarts the
window, as live. An average in which no face is found is left out and counted, as in the synthetic
builder. Image paths: thz/id<identity>/<posture>/<concealed|unconcealed>_c<capture>_<recording>_f<frame>.png.

Split: as the synthetic dataset (dataset.synth.DatasetPlan.split_of): for every identity and posture the
distinct capture indices present are ranked 0..K-1 and permuted with SeedSequence([seed, 0x5B1,
identity, posture]); the first goes to test, the second to val (K >= 3), the rest to train, so a capture
(with its concealed and unconcealed images) never spans two splits. With one capture (K = 1) it is train.

Every problem of the sheet is found before anything is processed, in one line naming the sheet's
line: a missing recording, frames outside the recording, a frame labelled twice, a blank label the
frames do not carry, a bad value (LabelSheetError, an input error).
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from dataset.contact_sheet import contact_sheet
from dataset.synth import CONTACT_SHEET, SUMMARY_FILE, DatasetPlan, DatasetSettings, _atomic_write_bytes, _png_bytes, \
    roi_to_png
from processing.calibration_model import ProcessingCalibration
from thzcore.frames import RawFrame
from thzcore.labels import POSTURES, SPLITS
from thzcore.logs import get_logger
from thzcore.manifest import MANIFEST_FILE, ManifestError, Row, content_hash, write_manifest
from thzcore.provenance import source_commit
from thzcore.recording import RecordingError, RecordingIndex, iter_frames, recording_index
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)
LABEL_COLUMNS = ("recording", "frames", "identity", "posture", "concealed", "capture")
OPTIONAL_COLUMNS = ("split",)
_TRUE = {"1", "true", "yes", "y", "concealed"}
_FALSE = {"0", "false", "no", "n", "unconcealed"}
SOURCE = "recordings"


class LabelSheetError(ManifestError):
    """A label sheet (or the recordings it names) that cannot make a dataset; one line naming the sheet's line."""


@dataclass
class LabelRow:
    """One capture: the frames of one recording with their labels (resolved: none left blank)."""

    where: str                 # "labels.csv:3", or the recording's name for a row made from its own meta
    recording: Path
    first: int
    last: int
    identity: int
    posture: str
    concealed: bool
    capture: int
    split: str = ""            # "" until assigned
    labels_from: str = "sheet"  # sheet | meta | sheet+meta
    missing_frame_ids: list[int] = field(default_factory=list)  # gaps inside the range (dropped frames)
    n_frames: int = 0


@dataclass
class SourceRecording:
    path: Path
    index: RecordingIndex
    sha256: str
    scanner: ScannerConfig
    scanner_from: str          # "recording" (its config_json) or "config" (the command's)

    @property
    def calibration_id(self) -> str:
        return str(self.index.attrs.get("calibration_id", "") or "")

    def provenance(self) -> dict[str, Any]:
        a = self.index.attrs
        fl = self.index.first_last()
        return {"path": str(self.path), "sha256": self.sha256, "session_id": a.get("session_id"),
                "scanner_id": a.get("scanner_id"), "calibration_id": self.calibration_id,
                "recording_version": a.get("recording_version", 1), "software_version": a.get("software_version"),
                "sim_seed": a.get("sim_seed"), "status": a.get("status"), "start_time": a.get("start_time"),
                "frames": int(len(self.index.frame_ids)), "frame_ids": None if fl is None else list(fl),
                "config_sha256": a.get("config_sha256"), "scanner_config_from": self.scanner_from}


@dataclass
class RecordingsPlan:
    """The validated rows and their recordings: everything checked, nothing processed yet."""

    rows: list[LabelRow]
    recordings: dict[Path, SourceRecording]
    labels: Path | None
    labels_sha256: str | None
    seed: int
    frames_averaged: int

    def calibration_ids(self) -> list[str]:
        return sorted({r.calibration_id for r in self.recordings.values() if r.calibration_id})


@dataclass
class RecordingsSummary:
    out: str
    source: str = SOURCE
    label_rows: int = 0
    thz_images: int = 0
    no_face: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    mean_quality: float = 0.0
    seconds: float = 0.0
    frames_processed: int = 0
    content_sha256_16: str = ""
    git_commit: str = ""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the label sheet
def _parse_frames(text: str, where: str) -> tuple[int | None, int | None]:
    t = text.strip()
    if not t:
        return None, None
    parts = [p.strip() for p in t.split("-")]
    try:
        if len(parts) == 1:
            a = b = int(parts[0])
        elif len(parts) == 2:
            a, b = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise LabelSheetError(f"{where}: frames {text!r}: write frame ids as A-B (inclusive), A, or leave it "
                              "blank for every frame") from None
    if a < 0 or b < a:
        raise LabelSheetError(f"{where}: frames {text!r}: need 0 <= first <= last")
    return a, b


def _parse_int(text: str, name: str, where: str) -> int | None:
    t = text.strip()
    if not t:
        return None
    try:
        v = int(t)
    except ValueError:
        raise LabelSheetError(f"{where}: {name} {text!r} is not an integer") from None
    if v < 0:
        raise LabelSheetError(f"{where}: {name} {v} must be >= 0")
    return v


def _parse_concealed(text: str, where: str) -> bool | None:
    t = text.strip().lower()
    if not t:
        return None
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise LabelSheetError(f"{where}: concealed {text!r}: write 1 (balaclava) or 0 (none)")


def _parse_posture(text: str, where: str) -> str | None:
    t = text.strip()
    if not t:
        return None
    if t not in POSTURES:
        raise LabelSheetError(f"{where}: posture {t!r} is not one of {', '.join(POSTURES)}")
    return t


def _parse_split(text: str, where: str) -> str:
    t = text.strip()
    if t and t not in SPLITS:
        raise LabelSheetError(f"{where}: split {t!r} is not one of {', '.join(SPLITS)}")
    return t


@dataclass
class _SheetRow:
    where: str
    recording: Path
    first: int | None
    last: int | None
    identity: int | None
    posture: str | None
    concealed: bool | None
    capture: int | None
    split: str


def _match_recording(cell: str, sheet_dir: Path, given: list[Path], where: str) -> Path:
    if not cell.strip():
        raise LabelSheetError(f"{where}: the recording is blank")
    p = Path(cell.strip()).expanduser()
    candidate = (p if p.is_absolute() else sheet_dir / p).resolve()
    if not given:
        if not candidate.is_file():
            raise LabelSheetError(f"{where}: recording {cell.strip()!r} not found ({candidate} does not exist)")
        return candidate
    for g in given:
        if g == candidate:
            return g
    by_name = [g for g in given if g.name == p.name]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise LabelSheetError(f"{where}: recording {cell.strip()!r} matches {len(by_name)} of the recordings given "
                              f"({', '.join(str(g) for g in by_name)}); name it by its path")
    raise LabelSheetError(f"{where}: recording {cell.strip()!r} is not among the recordings given "
                          f"({', '.join(g.name for g in given)})")


def read_label_sheet(path: str | Path, given: list[Path]) -> list[_SheetRow]:
    """The rows of a label sheet, each value checked (blank labels left None, to be taken from the frames)."""
    p = Path(path)
    if not p.is_file():
        raise LabelSheetError(f"label sheet {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LabelSheetError(f"{p}: not a UTF-8 CSV file") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in LABEL_COLUMNS if c not in cols]
    unknown = [c for c in cols if c not in LABEL_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise LabelSheetError(f"{p}: columns {cols}: " + "; ".join(
            ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else []))
            + f" (the columns are {', '.join(LABEL_COLUMNS)}[, split])")
    rows: list[_SheetRow] = []
    for i, rec in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "") for k, v in rec.items() if k is not None}
        if not any(v.strip() for v in rec.values()):
            continue  # a blank line
        where = f"{p.name}:{i}"
        first, last = _parse_frames(rec["frames"], where)
        rows.append(_SheetRow(where, _match_recording(rec["recording"], p.parent.resolve(), given, where), first, last,
                              _parse_int(rec["identity"], "identity", where), _parse_posture(rec["posture"], where),
                              _parse_concealed(rec["concealed"], where), _parse_int(rec["capture"], "capture", where),
                              _parse_split(rec.get("split", ""), where)))
    if not rows:
        raise LabelSheetError(f"{p} has no label rows")
    return rows


# ---------------------------------------------------------------- labels from the frames' own meta
def frame_labels(meta: Mapping[str, Any]) -> dict[str, Any]:
    """identity / posture / concealed a frame's meta carries (the simulator's truth), {} when none."""
    truth = meta.get("truth")
    if not isinstance(truth, dict):
        return {}
    scene = truth.get("scene") if isinstance(truth.get("scene"), dict) else {}
    out: dict[str, Any] = {}
    for k in ("identity", "posture", "concealed"):
        v = truth.get(k, scene.get(k))
        if v is not None:
            out[k] = v
    return out


def _scanner_of(index: RecordingIndex, fallback: ScannerConfig) -> tuple[ScannerConfig, str]:
    """The scanner the recording was made with (its config_json), else the command's own."""
    cj = index.attrs.get("config_json")
    if cj:
        try:
            section = json.loads(cj).get("scanner")
            if isinstance(section, dict):
                return ScannerConfig.model_validate(section), "recording"
        except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
            log.warning("the recording's scanner config is not readable here; the command's config is used",
                        extra={"file": str(index.path), "error": " ".join(str(exc).split())[:200]})
    return fallback, "config"


def plan_from_recordings(recordings: list[str | Path], labels: str | Path | None, settings: DatasetSettings,
                         seed: int = 0) -> RecordingsPlan:
    """Read and check the label sheet and every recording it names (or that is given), resolve blank labels
    from the frames' meta, number blank captures and assign the splits. Nothing is processed."""
    given = [Path(r).expanduser().resolve() for r in recordings]
    for g in given:
        if not g.is_file():
            raise RecordingError(f"recording {str(g)!r} does not exist")
    if len(set(given)) != len(given):
        raise LabelSheetError("a recording is given twice on the command line")
    if labels is None and not given:
        raise LabelSheetError("nothing to read: give RECORDINGS, a --labels sheet, or both")
    sheet = read_label_sheet(labels, given) if labels is not None else []
    named = {r.recording for r in sheet}
    for g in given:  # a recording without a row: one row over its frames, labelled by their meta
        if g not in named:
            sheet.append(_SheetRow(g.name, g, None, None, None, None, None, None, ""))
    sources: dict[Path, SourceRecording] = {}
    for path in dict.fromkeys([r.recording for r in sheet]):
        index = recording_index(path)
        if not len(index.frame_ids):
            raise RecordingError(f"{path}: the recording holds no complete frame")
        scanner, frm = _scanner_of(index, settings.scanner)
        if tuple(scanner.raw_frame_shape) != index.shape:
            raise RecordingError(f"{path}: frames of shape {index.shape} (lines, chirps, samples), but the scanner "
                                 f"config says {tuple(scanner.raw_frame_shape)}; use the config it was recorded with")
        sources[path] = SourceRecording(path, index, sha256_file(path), scanner, frm)
    n_avg = settings.processing.frames_averaged
    rows: list[LabelRow] = []
    taken: dict[Path, list[tuple[int, int, str]]] = defaultdict(list)
    for r in sheet:
        idx = sources[r.recording].index
        lo, hi = idx.first_last()  # type: ignore[misc]
        first, last = (lo, hi) if r.first is None else (r.first, r.last)
        assert first is not None and last is not None
        name = r.recording.name
        if first < lo or last > hi:
            outside = [f"{a}-{b}" if a != b else str(a) for a, b in
                       ((first, min(last, lo - 1)), (max(first, hi + 1), last)) if a <= b]
            raise LabelSheetError(f"{r.where}: frames {first}-{last} of {name}: {', '.join(outside)} not in the "
                                  f"recording (it holds frame ids {lo}-{hi})")
        for a, b, w in taken[r.recording]:
            if first <= b and a <= last:
                raise LabelSheetError(f"{r.where}: frames {max(a, first)}-{min(b, last)} of {name} are labelled "
                                      f"twice (also by {w})")
        taken[r.recording].append((first, last, r.where))
        sel = (idx.frame_ids >= first) & (idx.frame_ids <= last)
        present = set(int(v) for v in idx.frame_ids[sel])
        if len(present) < n_avg:
            raise LabelSheetError(f"{r.where}: frames {first}-{last} of {name} hold {len(present)} frame(s); an image "
                                  f"averages {n_avg} (processing.frames_averaged)")
        labels_meta = [frame_labels(m) for m, s in zip(idx.metas, sel) if s]
        resolved: dict[str, Any] = {"identity": r.identity, "posture": r.posture, "concealed": r.concealed}
        used_meta = False
        for key in ("identity", "posture", "concealed"):
            if resolved[key] is not None:
                continue
            values = {json.dumps(m.get(key)) for m in labels_meta}
            if values == {"null"} or not labels_meta:
                hint = "fill it in on the label sheet" if labels is not None else "give a --labels sheet"
                raise LabelSheetError(f"{r.where}: {key} is not given and the frames {first}-{last} of {name} carry "
                                      f"none of their own; {hint}")
            if len(values) > 1:
                raise LabelSheetError(f"{r.where}: the frames {first}-{last} of {name} change their {key} "
                                      f"({', '.join(sorted(values))}); split the row where it changes")
            resolved[key] = json.loads(values.pop())
            used_meta = True
        try:
            identity = int(resolved["identity"])
            posture = str(resolved["posture"])
            concealed = bool(resolved["concealed"])
        except (TypeError, ValueError):
            raise LabelSheetError(f"{r.where}: the frames' own labels of {name} are not usable: {resolved}") from None
        if identity < 0 or posture not in POSTURES:
            raise LabelSheetError(f"{r.where}: the frames' own labels of {name} are not usable: {resolved}")
        rows.append(LabelRow(r.where, r.recording, first, last, identity, posture, concealed,
                             -1 if r.capture is None else r.capture, r.split,
                             ("sheet+meta" if r.identity is not None or r.posture is not None
                              or r.concealed is not None else "meta") if used_meta else "sheet",
                             sorted(set(range(first, last + 1)) - present), len(present)))
    _number_captures(rows)
    _assign_splits(rows, seed)
    return RecordingsPlan(rows, sources, None if labels is None else Path(labels),
                          None if labels is None else sha256_file(Path(labels)), seed, n_avg)


def _number_captures(rows: list[LabelRow]) -> None:
    """Blank captures: the next index of their identity, posture and concealment not given explicitly."""
    used: dict[tuple[int, str, bool], set[int]] = defaultdict(set)
    for r in rows:
        if r.capture >= 0:
            used[(r.identity, r.posture, r.concealed)].add(r.capture)
    for r in rows:
        if r.capture < 0:
            key = (r.identity, r.posture, r.concealed)
            k = 0
            while k in used[key]:
                k += 1
            r.capture = k
            used[key].add(k)


def split_of(identity: int, posture: str, capture: int, captures: list[int], seed: int) -> str:
    """The synthetic dataset's split rule over the ranks of the captures present (dataset.synth.DatasetPlan)."""
    if len(captures) < 2:
        return "train"
    plan = DatasetPlan(n_identities=2, captures=len(captures), postures=(posture,), seed=seed)
    return plan.split_of(identity, posture, sorted(captures).index(capture))


def _assign_splits(rows: list[LabelRow], seed: int) -> None:
    caps: dict[tuple[int, str], set[int]] = defaultdict(set)
    for r in rows:
        caps[(r.identity, r.posture)].add(r.capture)
    for r in rows:
        if not r.split:
            r.split = split_of(r.identity, r.posture, r.capture, sorted(caps[(r.identity, r.posture)]), seed)


# ---------------------------------------------------------------- processing
def image_stem(row: LabelRow, first_frame_id: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in row.recording.stem)
    return (f"thz/id{row.identity:03d}/{row.posture}/{'concealed' if row.concealed else 'unconcealed'}"
            f"_c{row.capture}_{safe}_f{first_frame_id}")


def _frames_of(row: LabelRow, src: SourceRecording) -> Iterator[RawFrame]:
    sel = np.flatnonzero((src.index.frame_ids >= row.first) & (src.index.frame_ids <= row.last))
    start, stop = int(src.index.indices[sel].min()), int(src.index.indices[sel].max()) + 1
    for raw in iter_frames(src.path, start, stop, swmr=False):
        if row.first <= raw.frame_id <= row.last:
            yield raw


def prepare_out(out: Path, overwrite: bool) -> None:
    """OUT empty (or absent); with overwrite, a previous build's files in it are removed first."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out} is not empty; choose another folder or pass --overwrite to replace "
                             "a dataset built there before")
        summary = out / SUMMARY_FILE
        built_here = summary.is_file() and json.loads(summary.read_text() or "{}").get("source") == SOURCE
        if not built_here and not (out / ".from-recordings").is_file():
            raise ValueError(f"--out {out} holds something other than a dataset from recordings; --overwrite only "
                             "replaces one of those")
        for name in (MANIFEST_FILE, SUMMARY_FILE, CONTACT_SHEET):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "thz", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".from-recordings").write_text("a dataset from recordings is being built here\n")


def build_from_recordings(out: str | Path, plan: RecordingsPlan, settings: DatasetSettings, bits: int = 16,
                          calibrations: Mapping[str, ProcessingCalibration | None] | None = None,
                          calibration_dir: str | Path | None = None, overwrite: bool = False,
                          progress: bool = True) -> RecordingsSummary:
    """Process the plan's rows into `out` (PNG ROIs, manifest.csv, dataset.json, contact sheet).

    calibrations: calibration id (as the recordings name it) -> the ProcessingCalibration to apply, or None to
    process those recordings uncalibrated; an id not in the mapping is processed uncalibrated with a warning.
    """
    from tqdm import tqdm

    from processing.stage import ProcessingStage

    if bits not in (8, 16):
        raise ValueError(f"bits={bits}: choose 8 or 16")
    out = Path(out)
    prepare_out(out, overwrite)
    t0 = time.perf_counter()
    calibrations = dict(calibrations or {})
    proc_cfg = settings.processing.model_copy(update={"averaging": "block"})
    summary = RecordingsSummary(str(out), label_rows=len(plan.rows))
    manifest: list[Row] = []
    images: list[dict[str, Any]] = []
    row_reports: list[dict[str, Any]] = []
    qualities: list[float] = []
    total = sum(r.n_frames for r in plan.rows)
    bar = tqdm(total=total, desc="from-recordings", unit="frame", disable=not progress, dynamic_ncols=True)
    warned: set[str] = set()
    try:
        for row in plan.rows:
            src = plan.recordings[row.recording]
            cid = src.calibration_id
            cal = calibrations.get(cid) if cid else None
            if cid and cid not in calibrations and cid not in warned:
                warned.add(cid)
                log.warning("calibration record of the recording not given: processed uncalibrated",
                            extra={"file": str(src.path), "calibration_id": cid})
            stage = ProcessingStage(src.scanner, proc_cfg, calibration=cal,
                                    calibration_dir=None if calibration_dir is None else str(calibration_dir))
            found = no_face = 0
            for raw in _frames_of(row, src):
                o = stage.feed(raw)
                bar.update(1)
                summary.frames_processed += 1
                if o is None:
                    continue
                fids = [int(v) for v in o.frame.frame_ids]
                if not o.roi.found or o.roi.image is None:
                    no_face += 1
                    images.append({"path": None, "where": row.where, "frame_ids": fids, "found": False,
                                   "reason": o.roi.reason})
                    continue
                rel = f"{image_stem(row, fids[0])}.png"
                _atomic_write_bytes(out / rel, _png_bytes(roi_to_png(o.roi.image, bits)))
                manifest.append(Row(path=rel, identity=row.identity, posture=row.posture, concealed=row.concealed,
                                    modality="thz", capture=row.capture, split=row.split))
                qualities.append(float(o.roi.quality))
                images.append({"path": rel, "where": row.where, "frame_ids": fids, "found": True,
                               "quality": round(float(o.roi.quality), 4)})
                found += 1
            summary.thz_images += found
            summary.no_face += no_face
            if found == 0:
                log.warning("no face found in any average of a label row", extra={"row": row.where})
            row_reports.append({**{k: v for k, v in asdict(row).items() if k != "recording"},
                                "recording": str(row.recording), "calibration_id": cid,
                                "calibrated": cal is not None, "images": found, "no_face": no_face})
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(f"interrupted after {len(row_reports)} of {len(plan.rows)} label rows; no manifest "
                                f"written in {out}; run it again with --overwrite") from None
    bar.close()
    if not manifest:
        raise RecordingError(f"no face was found in any of the {summary.frames_processed} frames: no image to "
                             "write (a recording of an empty field, or another scanner's settings)")
    write_manifest(out, manifest)
    summary.splits = {s: sum(1 for r in manifest if r.split == s) for s in SPLITS}
    summary.mean_quality = round(float(np.mean(qualities)), 4) if qualities else 0.0
    _atomic_write_bytes(out / CONTACT_SHEET, _png_bytes(contact_sheet(out, manifest, seed=plan.seed)))
    summary.content_sha256_16 = content_hash(out)
    summary.git_commit = source_commit(("processing", "thzcore", "dataset/recordings.py"))
    summary.seconds = round(time.perf_counter() - t0, 2)
    doc = {**asdict(summary),
           "plan": {"source": SOURCE, "seed": plan.seed, "bits": bits, "frames_averaged": plan.frames_averaged,
                    "averaging": "block", "split_rule": "dataset.synth.DatasetPlan.split_of over capture ranks"},
           "labels": None if plan.labels is None else {"path": str(plan.labels), "sha256": plan.labels_sha256},
           "recordings": [s.provenance() for s in plan.recordings.values()],
           "rows": row_reports, "images": images,
           "settings": {"processing": json.loads(proc_cfg.model_dump_json())}}
    _atomic_write_bytes(out / SUMMARY_FILE, json.dumps(doc, indent=2, default=str).encode())
    (out / ".from-recordings").unlink(missing_ok=True)
    return summary


__all__ = ["LabelSheetError", "LabelRow", "RecordingsPlan", "RecordingsSummary", "build_from_recordings",
           "frame_labels", "plan_from_recordings", "read_label_sheet", "split_of"]

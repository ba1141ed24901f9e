"""What every calibration procedure shares: the run context, the processor, images and coordinates.

Image convention (FrameProcessor): rows are lines, top line first, at
    y_l = fov_y / 2 - (l + 1/2) pitch_y,
columns the fast axis at x_j = -fov_x / 2 + (j + 1/2) pitch_x.

Detection model (sim/beam.py; a monostatic coherent receiver): the received *amplitude* of a
target is its reflectivity map convolved with the two-way pattern g(r) = exp(-2 r^2 / w^2), which
is the one-way intensity profile: a knife edge gives an erf of 1/e^2 radius w in amplitude and a
point target a Gaussian of radius w (its power image has radius w / sqrt 2). The fits run on the
detected power (noise adds in power), with those shapes squared; the spot sizes reported are the
one-way beam's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from calibration.config import CalibrationSettings
from calibration.sources.base import MeasurementSource
from calibration.store import CalibrationError, CalibrationRecord, CalibrationStore, software_version, utc_now
from calibration.values import Check, Measured
from processing.calibration_model import ProcessingCalibration
from processing.processor import FrameProcessor
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


@dataclass
class Context:
    settings: CalibrationSettings
    source: MeasurementSource
    store: CalibrationStore
    report_dir: Path
    now: datetime = field(default_factory=utc_now)
    notes: list[str] = field(default_factory=list)
    quick: bool = False                # fewer points (tests, smoke runs); said in the report

    @property
    def cal(self):
        return self.settings.calibration

    @property
    def plots_dir(self) -> Path:
        return self.report_dir / "plots"

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            log.info(text)

    def current_processing(self) -> ProcessingCalibration | None:
        """The processing calibration in force, or None (reported in the notes, never silently skipped)."""
        try:
            pc = self.store.processing_calibration(self.source.scanner.scanner_id, self.cal.max_age_days,
                                                   now=self.now)
        except CalibrationError as exc:
            self.note(f"current processing calibration not used: {exc}; measured with the configured defaults")
            return None
        if pc is None:
            self.note("no processing calibration in the store yet: measured with the configured line lag")
        return pc

    def processor(self, scanner: ScannerConfig | None = None,
                  calibration: ProcessingCalibration | None | str = "current") -> FrameProcessor:
        """A FrameProcessor with linear output, applying the current processing calibration."""
        cfg = self.settings.processing.model_copy(update={"output_scale": "linear"})
        pc = self.current_processing() if calibration == "current" else calibration
        return FrameProcessor(scanner or self.source.scanner, cfg, pc)  # type: ignore[arg-type]


def image_axes(scanner: ScannerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(x of each column, y of each row) in metres, see the module docstring."""
    ra = scanner.raster
    x = -ra.fov_x_m / 2 + (np.arange(ra.samples_per_line) + 0.5) * ra.pixel_pitch_x_m
    y = ra.fov_y_m / 2 - (np.arange(ra.lines_per_frame) + 0.5) * ra.pixel_pitch_y_m
    return x, y


@dataclass
class ChirpSamples:
    """Every kept chirp of a scan: beam x (m, the processor's positions), line y (m), gated power,
    the group (dither position) and the line it belongs to (a unique label per scanned line)."""

    x: np.ndarray
    y: np.ndarray
    power: np.ndarray
    group: np.ndarray
    line: np.ndarray

    def shifted(self, dy: float) -> "ChirpSamples":
        return replace(self, y=self.y - dy)

    def regroup(self, g: int) -> "ChirpSamples":
        return replace(self, group=np.full_like(self.group, g))

    def select(self, sel: np.ndarray) -> "ChirpSamples":
        return ChirpSamples(self.x[sel], self.y[sel], self.power[sel], self.group[sel], self.line[sel])

    @staticmethod
    def pool(parts: list["ChirpSamples"]) -> "ChirpSamples":
        lines, base = [], 0
        for p in parts:  # keep line labels unique across the parts
            lines.append(p.line + base)
            base += int(p.line.max()) + 1 if p.line.size else 0
        return ChirpSamples(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("x", "y", "power", "group")),
                            np.concatenate(lines))

    def window(self, x0: float, y0: float, half_m: float) -> "ChirpSamples":
        return self.select((np.abs(self.x - x0) <= half_m) & (np.abs(self.y - y0) <= half_m))


def chirp_samples(proc: FrameProcessor, raws: list, reference: np.ndarray | None = None) -> ChirpSamples:
    """The de-warp's inputs instead of its output: per-chirp power at its exact beam position.

    The de-warp puts each chirp in the pixel its position falls in, so a sample can sit up to half
    a pitch (0.88 mm) from the pixel centre it is drawn at; on a 15 mm spot that changes a fitted
    width by a few per cent depending on where the chirps fall. Beam fits therefore use the chirps
    themselves, with the same selection the de-warp makes (inside +-fov_x / 2, moving in the
    line's direction). Rows keep the processor's line positions y_l.

    reference: (lines, chirps) power of a flat plate scanned the same way; each chirp's power is
    divided by it (a knife edge is a plate whose specular return falls off with the beam's
    steering angle, exp(-(2 alpha / theta0)^2): dividing by the unobstructed plate removes that).
    """
    ra = proc.scanner.raster
    _, y_rows = image_axes(proc.scanner)
    xs, ys, ps, ls = [], [], [], []
    for i, raw in enumerate(raws):
        p = proc.chirp_power(raw).astype(np.float64)
        if reference is not None:
            p = p / np.maximum(reference, 1e-30)
        x = proc.positions(raw).astype(np.float64)
        d = raw.direction.astype(np.float64)[:, None]
        nxt = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)
        prv = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
        keep = ((nxt - prv) * d > 0) & (np.abs(x) < ra.fov_x_m / 2)
        xs.append(x[keep]), ps.append(p[keep])
        ys.append(np.broadcast_to(y_rows[:, None], x.shape)[keep])
        ls.append((i * x.shape[0] + np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape))[keep])
    line = np.concatenate(ls)
    return ChirpSamples(np.concatenate(xs), np.concatenate(ys), np.concatenate(ps), np.zeros_like(line), line)


def scan_chirps(ctx: Context, proc: FrameProcessor, scene: dict[str, Any] | None, n_frames: int,
                reference: np.ndarray | None = None) -> ChirpSamples:
    ctx.source.place(scene)
    return chirp_samples(proc, ctx.source.acquire(n_frames), reference)


def plate_reference(ctx: Context, proc: FrameProcessor, range_m: float, n_frames: int) -> np.ndarray:
    """Mean (lines, chirps) power of a flat plate at range_m facing the scanner: the knife edge's 100 %."""
    ctx.source.place({"kind": "plate", "range_m": float(range_m), "tilt_deg": 0.0})
    return np.mean([proc.chirp_power(r).astype(np.float64) for r in ctx.source.acquire(n_frames)], axis=0)


def scan_power(ctx: Context, proc: FrameProcessor, scene: dict[str, Any] | None, n_frames: int) -> np.ndarray:
    """Place `scene`, acquire n frames, return their mean linear power (lines, samples_per_line)."""
    ctx.source.place(scene)
    raws = ctx.source.acquire(n_frames)
    return proc.average(raws).power.astype(np.float64)


def dithers(pitch_m: float, k: int) -> list[float]:
    """k target offsets that split one line pitch evenly: 0, p/k, ..., (k-1) p/k, centred on 0."""
    return [(i - (k - 1) / 2) * pitch_m / k for i in range(k)]


def dithered_chirps(ctx: Context, proc: FrameProcessor, scene_at: Callable[[float], dict[str, Any]],
                    k: int, n_frames: int, reference: np.ndarray | None = None) -> ChirpSamples:
    """Chirp samples of k scans with the target moved by dy along y, pooled at (y - dy).

    A line pitch of 7 mm against a 15 mm spot leaves ~2 lines per spot; shifting the target by
    pitch / k between scans gives an effective pitch of pitch / k on the slow axis.
    """
    pitch = proc.scanner.raster.pixel_pitch_y_m
    return ChirpSamples.pool([scan_chirps(ctx, proc, scene_at(dy), n_frames, reference).shifted(dy).regroup(i)
                              for i, dy in enumerate(dithers(pitch, k))])


def target(kind: str, range_m: float, **kw: Any) -> dict[str, Any]:
    """A calibration target as the JSON the sim backdoor takes (sim.scene.Target fields)."""
    return {"kind": kind, "range_m": float(range_m), **{k: float(v) if isinstance(v, (int, float)) and
                                                        not isinstance(v, bool) else v for k, v in kw.items()}}


@dataclass
class Outcome:
    """A procedure's result before sealing: values, checks, tables, plots (made after sealing), notes."""

    kind: str
    values: dict[str, Measured]
    checks: list[Check]
    tables: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    processing: ProcessingCalibration | None = None
    plot: Callable[[Path], dict[str, Path]] | None = None   # draws the PNGs into the plots dir
    meta: dict[str, Any] = field(default_factory=dict)


def make_record(ctx: Context, out: Outcome) -> CalibrationRecord:
    s = ctx.settings
    meta = dict(out.meta)
    meta["source"] = ctx.source.description
    if ctx.quick:
        meta["quick"] = True
    truth = ctx.source.truth()
    if truth:
        meta["truth"] = truth
    meta["notes"] = list(ctx.notes)
    return CalibrationRecord(
        kind=out.kind, created=ctx.now.isoformat(), scanner_id=ctx.source.scanner.scanner_id,
        software_version=software_version(), source="sim" if ctx.source.source_kind == "sim" else "hardware",
        values=out.values, checks=out.checks, tables=out.tables, processing=out.processing,
        config={"scanner": ctx.source.scanner.model_dump(mode="json"),
                "processing": s.processing.model_dump(mode="json"),
                "calibration": s.calibration.model_dump(mode="json")},
        meta=_jsonable(meta))


def _jsonable(x: Any) -> Any:
    """Floats that JSON can carry (NaN/inf -> None), numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def carry_processing(ctx: Context, **update: Any) -> ProcessingCalibration:
    """The processing calibration in force with `update` applied (id filled when the record is sealed)."""
    base = ctx.current_processing()
    scanner_id = ctx.source.scanner.scanner_id
    if base is None:
        base = ProcessingCalibration(calibration_id="pending", scanner_id=scanner_id)
    notes = dict(base.notes)
    notes.update(update.pop("notes", {}))
    return base.model_copy(update={**update, "calibration_id": "pending", "created": ctx.now.isoformat(),
                                   "notes": notes})

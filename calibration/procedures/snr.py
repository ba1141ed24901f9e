"""SNR and dynamic range: a reference plate and an empty scene, then a head phantom's face dynamic range.

All dB are of power (10 log10 of a power ratio = 20 log10 of the amplitude ratio).
  reference: a flat metal plate at the standoff, normal to the scanner axis. Its return falls off
             where the beam meets it obliquely, so the reference pixels are those within 3 dB of
             the plate's 99th-percentile power.
  floor:     the same pixels of an empty scene (leakage, phase-noise skirt and thermal noise in
             the range gate).
  SNR = 10 log10((<P_plate> - <P_empty>) / <P_empty>) over the reference pixels.
  face:      a head phantom (front-center, with and without the balaclava) scanned and averaged as
             in operation (processing.frames_averaged frames). Face pixels: the processor's
             FaceLocator finds the ROI box; inside it, the pixels of the bright region (2 cm box
             smoothing, above the frame's 20th-percentile background + processing.roi_threshold_db,
             largest connected part, eroded by the smoothing box) are the face. Face dynamic range = 10 log10(P90 / P10) of their
             power (calibration.face_dr_high_pct / face_dr_low_pct): the simulator's definition
             (docs/scanner_physics.md, sim.preview.face_dynamic_range_db), there over the true head
             pixels, here over the pixels an instrument can find.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from calibration.procedures.common import Context, Outcome, scan_power, target
from calibration.report import plot_snr_histogram
from calibration.fits.dynamic_range import dynamic_range_db, measure_snr
from calibration.values import Check, Measured
from processing.roi import FaceLocator


def face_dynamic_range(ctx: Context, proc, concealed: bool) -> tuple[Measured | None, np.ndarray | None, str]:
    """(DR of the face ROI in dB of power, the ROI's dB pixels, why not found)."""
    pcfg = ctx.settings.processing
    subject = {"kind": "subject", "identity": 0, "posture": "front-center", "concealed": concealed}
    p = scan_power(ctx, proc, subject, pcfg.frames_averaged)
    loc = FaceLocator(proc.scanner, pcfg)
    db = loc.to_db(p, "linear")
    res = loc.locate(db, "db")
    if res.box_px is None:
        return None, None, res.reason
    mask = face_mask(db, res.box_px, loc.smooth, pcfg.roi_threshold_db)
    if mask.sum() < 10:
        return None, None, f"only {int(mask.sum())} face pixels in the ROI box"
    cal = ctx.cal
    dr = dynamic_range_db(p, mask, lo_pct=cal.face_dr_low_pct, hi_pct=cal.face_dr_high_pct)
    return dr, db[mask], res.reason


def face_mask(db: np.ndarray, box_px: tuple[float, float, float, float], smooth: tuple[int, int],
              threshold_db: float) -> np.ndarray:
    """Pixels of the largest bright region (smoothed dB > 20th percentile + threshold) inside the ROI box."""
    sm = ndimage.uniform_filter(db.astype(np.float64), size=smooth, mode="nearest")
    bright = sm > np.percentile(sm, 20) + threshold_db
    r0, c0, h, w = box_px
    box = np.zeros_like(bright)
    box[int(np.floor(r0)):int(np.ceil(r0 + h)), int(np.floor(c0)):int(np.ceil(c0 + w))] = True
    labels, n = ndimage.label(bright & box)
    if n == 0:
        return np.zeros_like(bright)
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == (int(np.argmax(sizes)) + 1)
    # the 2 cm smoothing spreads the region over the dark border around the head: erode it back
    return ndimage.binary_erosion(region, structure=np.ones(smooth, dtype=bool))


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    sc = ctx.source.set_fast_amplitude(1.0)
    proc = ctx.processor(sc)
    n = max(cal.frames_per_point, 2)
    plate = scan_power(ctx, proc, target("plate", sc.optics.standoff_m, tilt_deg=0.0), n)
    empty = scan_power(ctx, proc, None, n)
    ref = plate >= 0.5 * np.percentile(plate, 99)
    r = measure_snr(plate[ref], empty[ref])
    values = {"snr": r.snr_db, "plate_power": r.signal_power, "floor_power": r.floor_power,
              "floor_power_db": Measured.of(10 * np.log10(r.floor_power.value),
                                            4.343 * r.floor_power.uncertainty / r.floor_power.value, "dB"),
              "plate_stability": r.stability_db,
              "plate_reference_fraction": Measured.of(float(ref.mean()), 0.0)}
    checks = [Check.at_least("snr", r.snr_db.value, "dB", cal.spec_min_snr_db)]
    faces: dict[str, np.ndarray] = {}
    for concealed in (False, True):
        name = "face_dynamic_range" + ("_concealed" if concealed else "")
        dr, roi_db, why = face_dynamic_range(ctx, proc, concealed)
        if dr is None:
            ctx.note(f"{name}: no face found ({why})")
            checks.append(Check.within(name, float("nan"), "dB", None, None, "face found"))
            continue
        values[name] = dr
        faces[name] = roi_db
        if not concealed and cal.spec_face_dynamic_range_db is not None:
            checks.append(Check.absolute(name, dr.value, "dB", cal.spec_face_dynamic_range_db,
                                         cal.tol_dynamic_range_db))
    ctx.note("dB are of power: 10 log10(P1/P0) = 20 log10(A1/A0)")
    plate_db, empty_db = 10 * np.log10(plate[ref]), 10 * np.log10(np.maximum(empty, 1e-12))

    def plot(d):
        return {"SNR histogram": plot_snr_histogram(d / "snr_hist.png", plate_db, empty_db,
                                                    faces.get("face_dynamic_range"), r.snr_db.value)}

    return Outcome("snr", values, checks, {}, None, plot, meta={"frames": n, "dB": "power"})

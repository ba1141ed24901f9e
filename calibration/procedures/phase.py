"""Line phase: the bidirectional line lag at the operating amplitude (applied by the processor) and a lag table.

Target: a vertical knife edge (metal for x > 0) at the standoff, so every forward and backward
line crosses one sharp step and the forward/backward cross-correlation has a single peak.
The processor's own estimator (FrameProcessor.estimate_line_lag: de-warp with a trial lag,
measure the sub-pixel row shift, correct, iterate) gives the lag of each frame; the record
holds their mean and its standard error. A scan of the forward/backward correlation over trial
lags (calibration.fits.line_phase) is drawn to show the peak. The table repeats the estimate at other
fast-axis amplitudes: a linear servo's lag does not depend on amplitude, a slew-limited one does.
"""
from __future__ import annotations

import math

import numpy as np

from calibration.fits.line_phase import lag_scan
from calibration.procedures.common import Context, Outcome, carry_processing, target
from calibration.report import plot_line_phase
from calibration.values import Check, Measured
from processing.processor import FrameProcessor


def _lags(proc: FrameProcessor, raws: list) -> tuple[list[float], list[float]]:
    lags, residual_px = [], []
    for r in raws:
        lag, res = proc.estimate_line_lag(r)
        lags.append(lag)
        residual_px.append(res.shift_px)
    return lags, residual_px


def _mean_sem(v: list[float], floor: float) -> tuple[float, float]:
    a = np.asarray(v)
    sem = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return float(a.mean()), max(sem, floor)


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    src = ctx.source
    n = max(2, cal.frames_per_point) if not ctx.quick else 2
    # the estimator starts from the lag in force and iterates to the measured one; the feedback
    # mapping (gain, offset) in force is kept
    scanner0 = src.set_fast_amplitude(1.0)
    proc = ctx.processor(scanner0)
    edge = target("knife_edge", scanner0.optics.standoff_m, edge_axis="x", offset_x_m=0.0)
    src.place(edge)
    raws = src.acquire(n)
    lags, resid = _lags(proc, raws)
    # one pixel of shift is pitch / (2 v0) of lag: that resolution floors the standard error at 1/20 px
    px_lag = scanner0.raster.pixel_pitch_x_m / (2 * proc.centre_speed_m_s)
    lag, lag_u = _mean_sem(lags, px_lag / 20)
    resid_lag = max(abs(r) for r in resid) * px_lag

    # correlation curve around the estimate, from the first frame's chirp powers
    p0 = proc.chirp_power(raws[0])
    trial = lag + np.linspace(-6, 6, 49) * px_lag
    rho = lag_scan(trial, lambda t: proc.power(raws[0], t, chirp_power=p0)[0], raws[0].direction)

    table = []
    amps = [1.0] if ctx.quick else list(cal.phase_amplitudes_rel)
    for rel in amps:
        if rel == 1.0:
            la, lu = lag, lag_u
            sc = scanner0
        else:
            sc = src.set_fast_amplitude(rel)
            pr = ctx.processor(sc)
            src.place(edge)
            la_list, _ = _lags(pr, src.acquire(n))
            la, lu = _mean_sem(la_list, sc.raster.pixel_pitch_x_m / (2 * pr.centre_speed_m_s) / 20)
        table.append({"amplitude_rel": rel, "amplitude_m": sc.raster.fast_amplitude_m, "lag_s": la,
                      "lag_sigma_s": lu})
    src.set_fast_amplitude(1.0)

    values = {"line_lag": Measured.of(lag, lag_u, "s"),
              "residual_shift": Measured.of(max(abs(r) for r in resid), 0.0, "px"),
              }
    if np.any(np.isfinite(rho)):
        values["peak_correlation"] = Measured.of(float(np.nanmax(rho)), 0.0)
    lag_spread = max(r["lag_s"] for r in table) - min(r["lag_s"] for r in table)
    values["lag_spread_over_amplitudes"] = Measured.of(lag_spread, 0.0, "s")
    checks = [Check.at_most("line_lag_residual", resid_lag, "s", cal.max_residual_lag_s),
              Check.at_most("line_lag_uncertainty", lag_u, "s", cal.max_residual_lag_s)]
    pc = carry_processing(ctx, line_lag_s=lag, notes={"line_lag": f"thz calibrate phase, {n} frames, knife edge"})
    ctx.note(f"line lag {lag * 1e6:.2f} +- {lag_u * 1e6:.2f} us relative to the "
             f"{ctx.settings.processing.position_source} position source; the processor applies it")

    def plot(d):
        return {"line-phase correlation and lag vs amplitude":
                plot_line_phase(d / "line_phase.png", trial, rho, lag, table)}

    return Outcome("phase", values, checks, {"lag_vs_amplitude": table}, pc, plot,
                   meta={"frames": n, "per_frame_lag_s": lags})

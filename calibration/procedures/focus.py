"""Depth of focus: the spot of a point target at several ranges and a fit of w(z).

Which target defines it: the POINT target. A point scatterer samples the beam's intensity profile
|u(r)|^2 = exp(-2 r^2 / w(z)^2) at each range (sim/beam.py: two-way amplitude g = exp(-2 r^2/w^2)),
whatever the wavefront curvature, so its image width is w(z) itself and the fitted w(z) gives
w0, the waist position and z_R with DoF = 2 z_R (the span where w <= sqrt2 w0). A flat plate
returns the whole beam: its echo does not depend on the spot size but on the mode overlap of the
mirrored beam, (w0 / w(z))^2, and on tilt, exp(-(2 alpha / theta0)^2) with theta0 = 2.1 deg, so a
fraction of a degree of misalignment moves it by dB. The plate therefore gives only an axial
cross-check: its -3 dB span is also 2 z_R, reported as `plate_dof` when measured.
"""
from __future__ import annotations

import math

import numpy as np

from calibration.fits.caustic import fit_caustic
from calibration.procedures.beam import point_scan
from calibration.procedures.common import Context, Outcome
from calibration.report import plot_caustic
from calibration.values import Check


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    sc = ctx.source.set_fast_amplitude(1.0)
    proc = ctx.processor(sc)
    ranges = list(cal.focus_ranges_m)
    if ctx.quick:
        ranges = ranges[::2]
    g0, g1 = proc.gate_m
    margin = sc.fmcw.range_resolution_m  # the Hann main lobe reaches one cell past the target
    outside = [z for z in ranges if not (g0 + margin <= z <= g1 - margin)]
    if outside:
        ctx.note(f"ranges {outside} m skipped: outside the range gate [{g0}, {g1}] m less one range cell")
        ranges = [z for z in ranges if z not in outside]
    if len(ranges) < 4:
        raise ValueError(f"focus: only {len(ranges)} ranges inside the range gate; set calibration.focus_ranges_m "
                         f"within [{g0 + margin:.3f}, {g1 - margin:.3f}] m")
    n, k = cal.frames_per_point, 2 if ctx.quick else 4
    rows, wx, wy, sx, sy, w, sw = [], [], [], [], [], [], []
    for z in ranges:
        fp, _ = point_scan(ctx, proc, z, n, k)
        rx, ry = fp.radius_x, fp.radius_y
        g = math.sqrt(rx.value * ry.value)  # round-beam radius: geometric mean of the axes
        gu = 0.5 * g * math.hypot(rx.uncertainty / rx.value, ry.uncertainty / ry.value)
        wx.append(rx.value), wy.append(ry.value), sx.append(rx.uncertainty), sy.append(ry.uncertainty)
        w.append(g), sw.append(max(gu, 1e-6))
        rows.append({"range_m": z, "w_x_m": rx.value, "w_x_sigma_m": rx.uncertainty, "w_y_m": ry.value,
                     "w_y_sigma_m": ry.uncertainty, "amplitude": fp.amplitude.value})
    lam = sc.optics.wavelength_m
    fit = fit_caustic(np.array(ranges), np.array(w), np.array(sw), wavelength_m=lam)
    fitx = fit_caustic(np.array(ranges), np.array(wx), np.maximum(sx, 1e-6), wavelength_m=lam)
    values = dict(fit.values())
    values["depth_of_focus_x"] = fitx.depth_of_focus
    values["waist_radius_x"] = fitx.waist_radius
    try:
        fity = fit_caustic(np.array(ranges), np.array(wy), np.maximum(sy, 1e-6), wavelength_m=lam)
        values["depth_of_focus_y"] = fity.depth_of_focus
        values["waist_radius_y"] = fity.waist_radius
    except Exception as exc:  # the dithered slow axis is the weaker one; say so rather than fail the run
        ctx.note(f"y-axis caustic not fitted: {exc}")
    checks = [Check.relative("depth_of_focus", fit.depth_of_focus.value, "m", cal.spec_depth_of_focus_m,
                             cal.tol_dof_rel),
              Check.relative("waist_diameter", 2 * fit.waist_radius.value, "m", cal.spec_spot_diameter_m,
                             cal.tol_spot_rel),
              Check.absolute("waist_position", fit.waist_position.value, "m", sc.optics.standoff_m,
                             cal.tol_waist_position_m)]
    ctx.note("depth of focus defined by the point target (spot width vs range); see docs/calibration.md")

    def plot(d):
        return {"w(z) with the Rayleigh fit": plot_caustic(d / "caustic.png", np.array(ranges), np.array(w),
                                                            np.array(sw), fit, cal.spec_depth_of_focus_m)}

    return Outcome("focus", values, checks, {"spot_vs_range": rows}, None, plot,
                   meta={"target": "point", "dithers": k, "frames_per_point": n})

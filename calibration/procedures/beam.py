"""Beam spot at the standoff: knife edges along both axes (erf fits) and a point target (2-D Gaussian fit).

x axis: a vertical edge (metal for x > x_e) crossed by every line; the amplitude image averaged
over the lines is one well-sampled edge-spread profile (1.76 mm column pitch).
y axis: a horizontal edge (metal for y > y_e); lines are 7 mm apart, so the edge is scanned at k
positions one pitch / k apart (dithering) and the samples pooled at y - dy.
Point: a small reflector at the field centre, also dithered in y, fitted with an axis-aligned
elliptical Gaussian. All fits run on the amplitude sqrt(P) (see procedures.common), so the radii
are the one-way 1/e^2 beam radius w and the spot diameter is 2 w, compared with the 1.5 cm spec.
"""
from __future__ import annotations

import numpy as np

from calibration.edge import fit_knife_edge
from calibration.procedures.common import (Context, Outcome, amplitude, dithered_scans, image_axes, scan_power,
                                           target)
from calibration.report import plot_knife_edge, plot_spot
from calibration.spot import fit_gaussian_2d
from calibration.values import Check, Measured


def edge_x(ctx: Context, proc, range_m: float, n: int):
    x, _ = image_axes(proc.scanner)
    p = scan_power(ctx, proc, target("knife_edge", range_m, edge_axis="x", offset_x_m=0.0), n)
    prof = amplitude(p).mean(axis=0)
    fit = fit_knife_edge(x, prof)
    return fit, x - fit.position.value, prof


def edge_y(ctx: Context, proc, range_m: float, n: int, k: int):
    _, y = image_axes(proc.scanner)
    scans = dithered_scans(ctx, proc, lambda dy: target("knife_edge", range_m, edge_axis="y", offset_y_m=dy), k, n)
    ys = np.concatenate([y - dy for dy, _ in scans])
    vs = np.concatenate([amplitude(p).mean(axis=1) for _, p in scans])
    fit = fit_knife_edge(ys, vs)
    return fit, ys - fit.position.value, vs


def point_scan(ctx: Context, proc, range_m: float, n: int, k: int, half_window_m: float = 0.04):
    """Dithered point-target scans pooled into one 2-D fit; returns (fit, image of the centred scan)."""
    x, y = image_axes(proc.scanner)
    scans = dithered_scans(ctx, proc, lambda dy: target("point", range_m, offset_x_m=0.0, offset_y_m=dy), k, n)
    X, Y, V = [], [], []
    for dy, p in scans:
        a = amplitude(p)
        xm, ym = np.meshgrid(x, y - dy)
        sel = (np.abs(xm) <= half_window_m) & (np.abs(ym) <= half_window_m)
        X.append(xm[sel]), Y.append(ym[sel]), V.append(a[sel])
    fit = fit_gaussian_2d(np.concatenate(X), np.concatenate(Y), np.concatenate(V))
    centre = min(scans, key=lambda s: abs(s[0]))[1]
    return fit, centre


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    sc = ctx.source.set_fast_amplitude(1.0)
    proc = ctx.processor(sc)
    z = sc.optics.standoff_m
    n = cal.frames_per_point
    k = 2 if ctx.quick else 4
    fx, sx, vx = edge_x(ctx, proc, z, n)
    fy, sy, vy = edge_y(ctx, proc, z, n, k)
    fp, img = point_scan(ctx, proc, z, n, k)
    values: dict[str, Measured] = {}
    values.update(fx.values("edge_x_"))
    values.update(fy.values("edge_y_"))
    values["edge_x_width_10_90_direct"] = Measured.of(fx.width_10_90_direct, 0.0, "m")
    values["point_diameter_x"] = Measured.of(2 * fp.radius_x.value, 2 * fp.radius_x.uncertainty, "m")
    values["point_diameter_y"] = Measured.of(2 * fp.radius_y.value, 2 * fp.radius_y.uncertainty, "m")
    values["point_x0"], values["point_y0"] = fp.x0, fp.y0
    values["point_ellipticity"] = Measured.of(fp.ellipticity, 0.0)
    spec, tol = cal.spec_spot_diameter_m, cal.tol_spot_rel
    checks = [Check.relative("spot_diameter_x_edge", fx.diameter_1e2.value, "m", spec, tol),
              Check.relative("spot_diameter_y_edge", fy.diameter_1e2.value, "m", spec, tol),
              Check.relative("spot_diameter_x_point", 2 * fp.radius_x.value, "m", spec, tol),
              Check.relative("spot_diameter_y_point", 2 * fp.radius_y.value, "m", spec, tol)]
    ctx.note(f"y-axis edge and point dithered over {k} positions per line pitch "
             f"({proc.scanner.raster.pixel_pitch_y_m * 1e3:.2f} mm)")
    x, y = image_axes(sc)

    def plot(d):
        return {"knife edge, fast axis (x)": plot_knife_edge(d / "edge_x.png", sx, vx, fx, "knife edge, x"),
                "knife edge, slow axis (y, dithered)": plot_knife_edge(d / "edge_y.png", sy, vy, fy, "knife edge, y"),
                "point target (power, dB)": plot_spot(d / "point.png", 10 * np.log10(np.maximum(img, 1e-12)),
                                                      (x[0], x[-1], y[-1], y[0]), "point target")}

    return Outcome("beam", values, checks, {}, None, plot, meta={"frames_per_point": n, "dithers": k})

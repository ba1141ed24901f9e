"""Beam spot at the standoff: knife edges along both axes (erf fits) and a point target (2-D Gaussian fit).

Both edges are metal half-planes facing the scanner, and a flat metal face returns less as the
beam is steered off its normal (coupling exp(-(2 alpha / theta0)^2), alpha ~ x / R): every chirp
of an edge scan is divided by the same chirp of a full plate scan (the unobstructed 100 %), and
only samples within 5 cm of the field centre along the edge enter the fit.
x axis: a vertical edge (metal for x > x_e) crossed by every line.
y axis: a horizontal edge (metal for y > y_e); lines are 7 mm apart, so the edge is scanned at k
positions one pitch / k apart (dithering) and the samples pooled at y - dy.
Point: a small reflector at the field centre, also dithered in y, fitted with an axis-aligned
elliptical Gaussian.

The fits use every chirp at its exact beam position (procedures.common.chirp_samples), not the
de-warped pixels, and run on the detected power, whose expectation is the squared coherent
amplitude plus the noise power: the edge model is a + (b/2 [1 + erf(sqrt2 x / w)])^2 and the
point's power is a Gaussian of 1/e^2 radius w / sqrt2. (Fitting sqrt(P) would bias w low, since
sqrt(s^2 + sigma^2) is not s + const.) The radii are the one-way 1/e^2 beam radius w; the spot
diameter 2 w is compared with the 1.5 cm spec. The same x edge fitted on the processed image is
recorded too (`image_edge_x_diameter_1e2`): the difference is what the de-warp does to a spot.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from calibration.fits.edge import fit_knife_edge
from calibration.procedures.common import (ChirpSamples, Context, Outcome, chirp_samples, dithered_chirps,
                                           image_axes, plate_reference, target)
from calibration.report import plot_knife_edge, plot_spot
from calibration.fits.spot import SpotFit, fit_gaussian_2d
from calibration.values import Check, Measured

EDGE_HALF_WINDOW_M = 0.05   # samples within this distance of the edge enter the fit
POINT_HALF_WINDOW_M = 0.035


def edge_x(ctx: Context, proc, range_m: float, n: int, ref: np.ndarray):
    """(chirp fit, image fit, chirp samples): a vertical edge at x = 0, normalised by the plate `ref`."""
    ctx.source.place(target("knife_edge", range_m, edge_axis="x", offset_x_m=0.0))
    raws = ctx.source.acquire(n)
    s = chirp_samples(proc, raws, ref)
    s = s.select((np.abs(s.x) <= EDGE_HALF_WINDOW_M) & (np.abs(s.y) <= EDGE_HALF_WINDOW_M))
    # every line holds the whole profile: its own step absorbs its gain drift
    fit = fit_knife_edge(s.x, s.power, power=True, groups=s.line)
    # the same edge on the processed image (rows near the centre, divided by the plate's image)
    x, y = image_axes(proc.scanner)
    rows = np.abs(y) <= EDGE_HALF_WINDOW_M
    img = proc.average(raws).power.astype(np.float64)[rows].mean(axis=0)
    isel = np.abs(x) <= EDGE_HALF_WINDOW_M
    ifit = fit_knife_edge(x[isel], img[isel], power=True)
    return fit, ifit, replace(s, x=s.x - fit.position.value)


def edge_y(ctx: Context, proc, range_m: float, n: int, k: int, ref: np.ndarray):
    s = dithered_chirps(ctx, proc, lambda dy: target("knife_edge", range_m, edge_axis="y", offset_y_m=dy), k, n,
                        ref)
    s = s.select((np.abs(s.y) <= EDGE_HALF_WINDOW_M) & (np.abs(s.x) <= EDGE_HALF_WINDOW_M))
    # one step per dither scan (its own gain), line-correlated errors
    fit = fit_knife_edge(s.y, s.power, power=True, groups=s.group, clusters=s.line)
    return fit, replace(s, y=s.y - fit.position.value)


def point_scan(ctx: Context, proc, range_m: float, n: int, k: int,
               half_window_m: float = POINT_HALF_WINDOW_M) -> tuple[SpotFit, ChirpSamples]:
    """Dithered point-target scans pooled into one 2-D fit of the chirp powers.

    Returns the fit with radii converted to the beam's w = sqrt2 x the power radius, and the samples.
    """
    s = dithered_chirps(ctx, proc, lambda dy: target("point", range_m, offset_x_m=0.0, offset_y_m=dy), k, n)
    s = s.window(0.0, 0.0, half_window_m)
    fit = fit_gaussian_2d(s.x, s.y, s.power, groups=s.group, clusters=s.line)
    r2 = math.sqrt(2.0)
    fit = replace(fit, radius_x=Measured.of(r2 * fit.radius_x.value, r2 * fit.radius_x.uncertainty, "m"),
                  radius_y=Measured.of(r2 * fit.radius_y.value, r2 * fit.radius_y.uncertainty, "m"))
    return fit, s


def _point_image(s: ChirpSamples, half: float, n: int = 40) -> np.ndarray:
    """A display image of scattered samples: mean power per cell of an n x n grid over the window."""
    ix = np.clip(((s.x + half) / (2 * half) * n).astype(int), 0, n - 1)
    iy = np.clip(((half - s.y) / (2 * half) * n).astype(int), 0, n - 1)
    acc = np.zeros((n, n))
    cnt = np.zeros((n, n))
    np.add.at(acc, (iy, ix), s.power)
    np.add.at(cnt, (iy, ix), 1)
    return np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    sc = ctx.source.set_fast_amplitude(1.0)
    proc = ctx.processor(sc)
    z = sc.optics.standoff_m
    n = cal.frames_per_point
    k = 2 if ctx.quick else 4
    ref = plate_reference(ctx, proc, z, n)
    fx, fimg, sx = edge_x(ctx, proc, z, n, ref)
    fy, sy = edge_y(ctx, proc, z, n, k, ref)
    fp, sp = point_scan(ctx, proc, z, n, k)
    values: dict[str, Measured] = {}
    values.update(fx.values("edge_x_"))
    values.update(fy.values("edge_y_"))
    for axis, f in (("x", fx), ("y", fy)):
        if Measured.finite(f.width_10_90_direct):
            values[f"edge_{axis}_width_10_90_direct"] = Measured.of(f.width_10_90_direct, 0.0, "m")
        else:
            ctx.note(f"model-free 10-90 % width of the {axis} edge not determined (a level is never crossed)")
    values["image_edge_x_diameter_1e2"] = fimg.diameter_1e2
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
             f"({proc.scanner.raster.pixel_pitch_y_m * 1e3:.2f} mm); fits on per-chirp samples")
    ctx.note(f"de-warped image gives a 1/e^2 diameter of {fimg.diameter_1e2.value * 1e3:.2f} mm for the x edge "
             f"(per-chirp fit {fx.diameter_1e2.value * 1e3:.2f} mm)")
    img = _point_image(sp, POINT_HALF_WINDOW_M)
    h = POINT_HALF_WINDOW_M

    def plot(d):
        return {"knife edge, fast axis (x)": plot_knife_edge(d / "edge_x.png", sx.x, sx.power, fx, "knife edge, x",
                                                             power=True),
                "knife edge, slow axis (y, dithered)": plot_knife_edge(d / "edge_y.png", sy.y, sy.power, fy,
                                                                       "knife edge, y", power=True),
                "point target (power, dB)": plot_spot(d / "point.png", 10 * np.log10(np.maximum(img, 1e-12)),
                                                      (-h, h, -h, h), "point target")}

    return Outcome("beam", values, checks, {}, None, plot, meta={"frames_per_point": n, "dithers": k})

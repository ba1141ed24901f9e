"""Field of view and scan linearity: a grid of metal dots maps the processor's x, y to true position.

The grid (pitch p, one dot at the origin offsets) is scanned at the standoff, dithered in y like
the point target. Every dot inside the field is located by a 2-D Gaussian fit of the chirp
powers (at the processor's per-chirp positions) in a window around its grid node; its true
position is that node. A
straight-line fit per axis (calibration.fits.linearity) gives the scale g (true field = g x nominal
field) and the residual non-linearity. The x mapping becomes the processor's feedback gain and
offset (composed with the ones in force): x_true = g (g_old fb + c_old) + c.
"""
from __future__ import annotations

import numpy as np

from calibration.fits.fitting import FitError
from calibration.fits.linearity import fit_linearity
from calibration.procedures.common import ChirpSamples, Context, Outcome, carry_processing, dithered_chirps, target
from calibration.report import plot_linearity
from calibration.fits.spot import fit_gaussian_2d
from calibration.values import Check, Measured


def locate_dots(s: ChirpSamples, pitch_m: float, origin: tuple[float, float],
                fov: tuple[float, float]) -> list[tuple[float, float, float, float]]:
    """[(x_found, y_found, x_true, y_true)] for each grid node at least 1.5 cm inside the field.

    x_found, y_found: the dot centre in the processor's coordinates (per-chirp positions, line y),
    from a 2-D Gaussian fit of the chirp powers within 0.4 pitch of the node.
    """
    half = 0.4 * pitch_m
    kx = np.arange(np.ceil((-fov[0] / 2 - origin[0]) / pitch_m), np.floor((fov[0] / 2 - origin[0]) / pitch_m) + 1)
    ky = np.arange(np.ceil((-fov[1] / 2 - origin[1]) / pitch_m), np.floor((fov[1] / 2 - origin[1]) / pitch_m) + 1)
    out = []
    for i in kx:
        for j in ky:
            xt, yt = origin[0] + i * pitch_m, origin[1] + j * pitch_m
            if abs(xt) > fov[0] / 2 - 0.015 or abs(yt) > fov[1] / 2 - 0.015:
                continue  # a dot at the edge is cut by the field: its centroid is biased
            w = s.window(xt, yt, half)
            try:
                f = fit_gaussian_2d(w.x, w.y, w.power, groups=w.group)
            except FitError:
                continue
            if abs(f.x0.value - xt) < half and abs(f.y0.value - yt) < half:
                out.append((f.x0.value, f.y0.value, xt, yt))
    return out


def run(ctx: Context) -> Outcome:
    cal = ctx.cal
    sc = ctx.source.set_fast_amplitude(1.0)
    proc = ctx.processor(sc)
    k = 2 if ctx.quick else 4
    origin = (0.0, 0.0)
    s = dithered_chirps(ctx, proc, lambda dy: target("grid", sc.optics.standoff_m, grid_pitch_m=cal.grid_pitch_m,
                                                     offset_x_m=origin[0], offset_y_m=origin[1] + dy),
                        k, cal.frames_per_point)
    dots = locate_dots(s, cal.grid_pitch_m, origin, (sc.raster.fov_x_m, sc.raster.fov_y_m))
    if len(dots) < 6:
        raise FitError(f"fov: found only {len(dots)} grid dots; is the grid target in the field?")
    d = np.array(dots)
    fx = fit_linearity(d[:, 0], d[:, 2])
    fy = fit_linearity(d[:, 1], d[:, 3])
    fov_x = fx.scale.value * sc.raster.fov_x_m
    fov_y = fy.scale.value * sc.raster.fov_y_m
    values = {"fov_x": Measured.of(fov_x, fx.scale.uncertainty * sc.raster.fov_x_m, "m"),
              "fov_y": Measured.of(fov_y, fy.scale.uncertainty * sc.raster.fov_y_m, "m"),
              "scale_x": fx.scale, "scale_y": fy.scale, "offset_x": fx.offset, "offset_y": fy.offset,
              "nonlinearity_x": Measured.of(fx.nonlinearity_pct, 0.0, "%"),
              "nonlinearity_y": Measured.of(fy.nonlinearity_pct, 0.0, "%"),
              "dots": Measured.of(len(dots), 0.0)}
    checks = [Check.relative("fov_x", fov_x, "m", cal.spec_fov_m, cal.tol_fov_rel),
              Check.relative("fov_y", fov_y, "m", cal.spec_fov_m, cal.tol_fov_rel),
              Check.at_most("nonlinearity_x", fx.nonlinearity_pct, "%", cal.max_nonlinearity_pct),
              Check.at_most("nonlinearity_y", fy.nonlinearity_pct, "%", cal.max_nonlinearity_pct)]
    cur = ctx.current_processing()
    g_old, c_old = (cur.feedback_gain, cur.feedback_offset_m) if cur is not None else (1.0, 0.0)
    g, c = fx.scale.value, fx.offset.value
    pc = carry_processing(ctx, feedback_gain=g * g_old, feedback_offset_m=g * c_old + c,
                          notes={"feedback_mapping": f"thz calibrate fov, {len(dots)} grid dots"})
    table = [{"x_found_m": a, "y_found_m": b, "x_true_m": xt, "y_true_m": yt} for a, b, xt, yt in dots]

    def plot(dd):
        return {"linearity, x": plot_linearity(dd / "linearity_x.png", fx.drive, fx.residuals, "x"),
                "linearity, y": plot_linearity(dd / "linearity_y.png", fy.drive, fy.residuals, "y")}

    return Outcome("fov", values, checks, {"grid_dots": table}, pc, plot, meta={"dithers": k})

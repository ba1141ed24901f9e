"""Beam physics end to end through the virtual scanner: spot size vs range, plate tilt, knife edge."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erfc

from sim import beam
from sim.preview import gate_bins, peak_in_gate
from sim.scanner import RasterDrive
from sim.scene import Target


def _line_scan(vs, scanner_cfg, target, fast_amp=0.05):
    """Peak-in-gate power of every chirp along y = 0 and the beam position u of each chirp."""
    vs.set_scene(target)
    drive = RasterDrive.from_config(scanner_cfg).model_copy(update={"fast_amplitude_m": fast_amp,
                                                                    "slow_amplitude_m": 0.0})
    raw = vs.acquire_frame(0, drive=drive)
    lo, hi = gate_bins(scanner_cfg, 5.75, 6.3)
    p = peak_in_gate(raw.if_samples[8:24], lo, hi)
    shift = int(round(vs.true_line_lag_s / scanner_cfg.chirp_period_s))   # feedback trails the beam
    u = np.roll(raw.feedback_x[8:24], -shift, axis=1)[:, :-shift]
    return u.ravel(), p[:, :-shift].ravel()


def _gauss_width(u, p):
    """1/e^2 radius of a Gaussian power profile p = P0 exp(-2 (u - u0)^2 / r^2) (log-parabola fit)."""
    sel = p > 0.05 * p.max()
    c2, c1, c0 = np.polyfit(u[sel], np.log(p[sel]), 2)
    return math.sqrt(-2.0 / c2), -c1 / (2 * c2)


@pytest.mark.parametrize("dz_over_zr", [0.0, 1.0])
def test_point_target_spot_follows_w_of_z(quiet_scanner, scanner_cfg, dz_over_zr):
    o = scanner_cfg.optics
    z = o.waist_range_m + dz_over_zr * o.rayleigh_range_m          # 6.0 m and 6.2 m
    u, p = _line_scan(quiet_scanner, scanner_cfg, Target(kind="point", range_m=z, offset_x_m=0.01))
    r_u, u0 = _gauss_width(u, p)
    # two-way power of a point scatterer ~ exp(-4 x^2 / w^2): 1/e^2 radius w / sqrt(2) at the target
    w_meas = r_u * math.sqrt(2.0) * z / o.standoff_m
    w_ref = o.beam_radius_m(z)            # 7.50 mm in the waist, sqrt(2) * 7.50 = 10.61 mm one z_R away
    assert w_meas == pytest.approx(w_ref, rel=0.03)
    assert u0 * z / o.standoff_m == pytest.approx(0.01, abs=3e-4)


def test_set_beam_changes_the_true_waist(quiet_scanner, scanner_cfg):
    quiet_scanner.set_beam(waist_diameter_m=0.02)
    assert quiet_scanner.true_beam["waist_diameter_m"] == 0.02
    u, p = _line_scan(quiet_scanner, scanner_cfg, Target(kind="point", range_m=6.0))
    r_u, _ = _gauss_width(u, p)
    assert r_u * math.sqrt(2.0) == pytest.approx(0.010, rel=0.03)
    with pytest.raises(ValueError):
        quiet_scanner.set_beam(waist_diameter_m=-1.0)


def test_plate_return_vs_tilt_follows_the_coupling(quiet_scanner, scanner_cfg):
    theta0 = scanner_cfg.optics.divergence_rad                      # 2.144 deg
    powers = {}
    for tilt in (0.0, 0.5, 1.0, 1.5, 2.0):
        _, p = _line_scan(quiet_scanner, scanner_cfg, Target(kind="plate", range_m=6.0, tilt_deg=tilt),
                          fast_amp=0.0005)
        powers[tilt] = p.mean()
    for tilt in (0.5, 1.0, 1.5, 2.0):
        expect = math.exp(-(2 * math.radians(tilt) / theta0) ** 2)  # 1.0 deg -> 0.419, 2.0 deg -> 0.031
        assert powers[tilt] / powers[0.0] == pytest.approx(expect, rel=0.03)


def test_knife_edge_profile_is_an_erf(quiet_scanner, scanner_cfg):
    xe = 0.02
    o = scanner_cfg.optics
    u, p = _line_scan(quiet_scanner, scanner_cfg, Target(kind="knife_edge", range_m=6.0, offset_x_m=xe))
    _, p_plate = _line_scan(quiet_scanner, scanner_cfg, Target(kind="plate", range_m=6.0))
    a = np.sqrt(p / p_plate.max())
    # off axis the plate is seen at alpha = u / s (angular scan): divide by its tilt coupling
    a /= np.sqrt(beam.tilt_coupling(u / o.standoff_m, o.divergence_rad))
    # coherent knife edge: amplitude = Phi(2 (x - xe) / w), 10-90 % over 1.2816 w = 9.61 mm
    model = lambda x, x0, w: 0.5 * erfc(-math.sqrt(2.0) * (x - x0) / w)  # noqa: E731
    (x0, w), _ = curve_fit(model, u, a, p0=(0.0, 0.01))
    assert x0 == pytest.approx(xe, abs=1e-4)
    assert w == pytest.approx(o.w0_m, rel=0.02)
    assert np.abs(a - model(u, x0, w)).max() < 0.02


def test_closed_forms_of_the_beam_module(scanner_cfg):
    o = scanner_cfg.optics
    w0, lam = o.w0_m, o.wavelength_m
    assert beam.rayleigh_range(w0, lam) == pytest.approx(0.2004, rel=1e-3)   # pi 7.5mm^2 / 0.8817 mm
    assert beam.beam_radius(6.0 + 0.2004, w0, 6.0, lam) == pytest.approx(w0 * math.sqrt(2), rel=1e-3)
    # the tilted mirror: exp(-(2 alpha / theta0)^2) is the physical-optics plate's closed form, squared
    from sim.physical_optics import plate_field
    alpha = np.radians([0.5, 1.0, 2.0])
    assert np.allclose(beam.tilt_coupling(alpha, beam.divergence(w0, lam)),
                       [plate_field(a, w0, 2 * math.pi / lam) ** 2 for a in np.arctan(alpha)], rtol=1e-9)


def test_grid_target_dots_sit_at_the_pitch(quiet_scanner, scanner_cfg):
    # dots every 50 mm at 6.0 m appear every 50 mm of feedback; a beam on a dot returns
    # 0.3 (point amplitude) x 1 (focus) -> power peaks of equal height
    u, p = _line_scan(quiet_scanner, scanner_cfg, Target(kind="grid", range_m=6.0, grid_pitch_m=0.05,
                                                         offset_x_m=0.0), fast_amp=0.12)
    order = np.argsort(u)
    u, p = u[order], p[order]
    peaks = [u[i] for i in range(1, len(p) - 1) if p[i] >= p[i - 1] and p[i] >= p[i + 1] and p[i] > 0.5 * p.max()]
    centres = np.array(sorted({round(x / 0.05) for x in peaks}))
    assert set(centres) >= {-2, -1, 0, 1, 2}
    for k in (-1, 0, 1):
        near = [x for x in peaks if abs(x - 0.05 * k) < 0.01]
        assert abs(np.mean(near) - 0.05 * k) < 5e-4


def test_package_exports_lazily():
    import sim
    assert sim.VirtualScanner.__name__ == "VirtualScanner" and sim.Subject.__name__ == "Subject"
    with pytest.raises(AttributeError):
        sim.nothing_here

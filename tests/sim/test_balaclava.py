"""The knitted layer: one-way loss in dB, weak echo, interference with the skin inside one range cell."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.beam import carrier_phase
from sim.config import SimConfig
from sim.fmcw import beat_cycles_per_sample
from sim.receiver import receive
from sim.preview import gate_bins, peak_in_gate
from sim.scanner import VirtualScanner
from sim.scene import Subject
from tests.sim.conftest import QUIET


@pytest.mark.parametrize("loss_db", [1.0, 3.0])
def test_fabric_one_way_loss_in_db(scanner_cfg, loss_db):
    cfg = SimConfig.model_validate({"balaclava": {"loss_min_db": loss_db, "loss_max_db": loss_db,
                                                  "echo_min_db": -120.0, "echo_max_db": -120.0}})
    vs = VirtualScanner(scanner_cfg, cfg, seed=3)
    vs.set_noise(**QUIET)
    lo, hi = gate_bins(scanner_cfg, 5.75, 6.25)
    p = {}
    for concealed in (False, True):
        vs.set_scene(Subject(identity=4, posture="front-center", concealed=concealed, capture_seed=2))
        p[concealed] = peak_in_gate(vs.acquire_frame(0).if_samples, lo, hi)
    bright = p[False] > 0.05 * p[False].max()
    ratio_db = 10 * np.log10(np.median(p[True][bright] / p[False][bright]))
    assert ratio_db == pytest.approx(-2 * loss_db, abs=0.15)           # two-way: twice the one-way loss


def test_fabric_echo_level_in_the_maps(scanner_cfg):
    cfg = SimConfig.model_validate({"balaclava": {"echo_min_db": -25.0, "echo_max_db": -25.0}})
    vs = VirtualScanner(scanner_cfg, cfg, seed=3)
    vs.set_scene(Subject(identity=1, posture="front-center", concealed=False, capture_seed=None))
    open_skin = np.abs(vs.scene_maps().fields()[0][0]) ** 2
    vs.set_scene(Subject(identity=1, posture="front-center", concealed=True, capture_seed=None))
    m = vs.scene_maps()
    b = cfg.balaclava
    fab = np.abs(m.fields()[0][1]) ** 2
    # where the open skin glints, the fabric (a thin layer on the same curvature) returns its power
    # reflectivity relative to skin: -25 dB, times the knit's mean square (1 + depth^2 / 4)
    glint = open_skin > 0.3 * open_skin.max()
    rel_db = 10 * np.log10(np.median(fab[glint] / open_skin[glint]))
    assert rel_db == pytest.approx(-25.0 + 10 * np.log10(1 + b.knit_depth ** 2 / 4), abs=3.0)
    # the echo comes from in front of the skin: gap (0-5 mm) + fabric thickness
    cover = np.isfinite(m.surface_range[1])
    in_front = m.surface_range[0][cover] - m.surface_range[1][cover]
    assert np.median(in_front) == pytest.approx(vs.truth()["capture"]["gap_mm"] * 1e-3 + b.thickness_mm * 1e-3,
                                                abs=1.5e-3)


def test_skin_and_fabric_interfere_inside_one_range_cell(scanner_cfg):
    f = scanner_cfg.fmcw
    r_skin, a_s, a_f = 6.0, 0.4, 0.1
    powers = []
    gaps = np.linspace(0.0, 0.5e-3, 11)        # half a wavelength of round trip per 0.22 mm of gap
    for gap in gaps:
        r_fab = r_skin - gap
        cyc = [beat_cycles_per_sample(r, f.slope_hz_per_s, f.reference_range_m, f.sample_rate_hz)
               for r in (r_skin, r_fab)]
        ph = [carrier_phase(r, scanner_cfg.optics.carrier_hz, f.reference_range_m) for r in (r_skin, r_fab)]
        x = receive(np.array([[a_s, a_f]]), np.array([ph]), np.array([cyc]), 128, 4000.0, 8191)
        powers.append(np.abs(np.fft.rfft(x[0] * np.hanning(128))).max() ** 2)
    powers = np.array(powers) / (a_s * 4000 * np.hanning(128).sum() / 2) ** 2   # Hann coherent gain ~ N/4
    # same range cell: peak power ~ |a_s + a_f exp(j 4 pi f_c gap / c)|^2 / a_s^2, between 0.5625 and 1.5625
    # relative phase at mid-chirp: carrier term 4 pi f_c gap / c plus the beat offset over (N - 1) / 2 samples
    dcyc = beat_cycles_per_sample(r_skin, f.slope_hz_per_s, 0.0, f.sample_rate_hz) - beat_cycles_per_sample(
        r_skin - gaps, f.slope_hz_per_s, 0.0, f.sample_rate_hz)
    dphi = 4 * math.pi * scanner_cfg.optics.carrier_hz * gaps / 299792458.0 + 2 * math.pi * dcyc * 63.5
    expect = np.abs(1 + (a_f / a_s) * np.exp(-1j * dphi)) ** 2
    assert np.allclose(powers, expect, atol=0.02)
    assert powers.max() / powers.min() > 2.5

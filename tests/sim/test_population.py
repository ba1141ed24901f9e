"""Head phantoms: stable identities that differ, postures as yaw, per-capture variation."""
from __future__ import annotations

import numpy as np
import pytest

from sim.capture import draw_capture
from sim.maps import MapGrid, Optics
from sim.maps import subject_maps
from sim.population import SHAPE_EXTRA_STATS, SHAPE_STATS, Population
from sim.scene import Subject, scene_from_json, Target


def _mask(shape, cap, sim_cfg, scanner_cfg):
    o = scanner_cfg.optics
    optics = Optics(o.carrier_hz, o.wavelength_m, o.w0_m, o.waist_range_m, o.standoff_m)
    grid = MapGrid.covering(0.16, 0.2, 0.0015)
    return subject_maps(shape, cap, False, grid, optics, sim_cfg)


def test_identities_are_stable_and_independent_of_population_size():
    a = Population(20, 1234, 0.5).identity(7)
    b = Population(50, 1234, 0.5).identity(7)
    assert a == b
    assert Population(20, 99, 0.5).identity(7) != a
    with pytest.raises(ValueError):
        Population(20, 1234).identity(20)


def test_identities_differ_and_difficulty_scales_the_spread():
    def spread(d):
        pop = Population(20, 1234, d)
        v = np.array([pop.identity(i).vector() for i in range(20)])
        sd = np.array([s for _, s in (*SHAPE_STATS.values(), *SHAPE_EXTRA_STATS.values())])
        return np.median(np.std(v, axis=0) / sd)
    easy, hard = spread(0.0), spread(1.0)
    # spread factor 2.2 - 1.6 d: 2.2 sd at difficulty 0, 0.6 sd at 1 (clipping makes it a little smaller)
    assert easy == pytest.approx(2.2, rel=0.25) and hard == pytest.approx(0.6, rel=0.25)
    pop = Population(20, 1234, 1.0)
    vs = [pop.identity(i).vector() for i in range(20)]
    assert min(np.abs(vs[i] - vs[j]).max() for i in range(20) for j in range(i)) > 0


def test_identities_differ_at_the_beam_scale(scanner_cfg, sim_cfg):
    pop = Population(20, 1234, sim_cfg.difficulty)
    subj = Subject(identity=0, posture="front-center", concealed=False)
    cap = draw_capture(subj, sim_cfg, 6.0)
    m0 = _mask(pop.identity(0), cap, sim_cfg, scanner_cfg)
    m1 = _mask(pop.identity(1), cap, sim_cfg, scanner_cfg)
    iou = (m0.head_mask & m1.head_mask).sum() / (m0.head_mask | m1.head_mask).sum()
    assert iou < 0.97                                    # silhouettes differ by more than a beam rim
    # face ranges (depth) differ by more than a millimetre somewhere inside both heads
    both = m0.head_mask & m1.head_mask
    assert np.percentile(np.abs(m0.surface_range[0] - m1.surface_range[0])[both], 90) > 0.003


def test_postures_turn_the_head(scanner_cfg, sim_cfg):
    pop = Population(20, 1234, 0.5)
    masks = {}
    for p in ("full-left", "full-right", "front-center"):
        cap = draw_capture(Subject(identity=3, posture=p, concealed=False), sim_cfg, 6.0)
        masks[p] = _mask(pop.identity(3), cap, sim_cfg, scanner_cfg)
    # full-left (+90 deg, nose towards +x): the nose makes the profile extend further to +x than to -x
    def extent(m):
        cols = np.where(m.head_mask[m.head_mask.shape[0] // 2 - 10:m.head_mask.shape[0] // 2 + 10].any(axis=0))[0]
        return m.grid.u0 + cols.min() * m.grid.pitch, m.grid.u0 + cols.max() * m.grid.pitch
    lo_l, hi_l = extent(masks["full-left"])
    lo_r, hi_r = extent(masks["full-right"])
    assert hi_l > -lo_l + 0.01 and -lo_r > hi_r + 0.01


def test_capture_variation_is_seeded(sim_cfg):
    s = Subject(identity=1, posture="front-left", concealed=True, capture_seed=5)
    a, b = draw_capture(s, sim_cfg, 6.0), draw_capture(s, sim_cfg, 6.0)
    assert a == b
    c = draw_capture(s.model_copy(update={"capture_seed": 6}), sim_cfg, 6.0)
    assert c != a
    assert abs(a.range_m - 6.0) <= sim_cfg.capture.range_spread_m
    nominal = draw_capture(s.model_copy(update={"capture_seed": None}), sim_cfg, 6.0)
    assert nominal.yaw_deg == 30.0 and nominal.range_m == 6.0


def test_scene_models_round_trip_and_validate():
    s = Subject(identity=3, posture="full-left", concealed=True, offset_x_m=0.02, capture_seed=9)
    assert scene_from_json(s.model_dump_json()) == s
    t = Target(kind="knife_edge", range_m=6.1, edge_axis="y", offset_y_m=0.01)
    assert scene_from_json(t.model_dump(mode="json")) == t
    assert scene_from_json("null") is None
    with pytest.raises(ValueError, match="posture"):
        Subject(identity=0, posture="sideways", concealed=False)
    with pytest.raises(ValueError):
        Target(kind="cube", range_m=6.0)
    with pytest.raises(ValueError):
        Subject(identity=0, posture="front-center", concealed=False, extra_field=1)
    assert s.key() == Subject.model_validate_json(s.model_dump_json()).key()

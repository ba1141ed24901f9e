"""The virtual scanner's frame: shape, units, determinism from the seed, noise terms, truth in meta."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim.scanner import VirtualScanner
from sim.scene import Subject, Target
from thzcore.frames import RawFrame
from thzcore.wire import decode, encode


@pytest.fixture(scope="module")
def subject_frames(scanner_cfg, sim_cfg):
    subj = Subject(identity=2, posture="front-right", concealed=True, capture_seed=11)
    out = {}
    for key, seed, fid in (("a", 7, 4), ("b", 7, 4), ("seed", 8, 4), ("frame", 7, 5)):
        vs = VirtualScanner(scanner_cfg, sim_cfg, seed=seed)
        vs.set_scene(subj)
        out[key] = vs.acquire_frame(fid)
    return out


def test_frame_shape_units_and_meta(subject_frames, scanner_cfg):
    raw = subject_frames["a"]
    assert isinstance(raw, RawFrame)
    assert raw.if_samples.shape == (64, 512, 128) and raw.if_samples.dtype == np.int16
    assert raw.feedback_x.shape == (64, 512) and raw.feedback_x.dtype == np.float32
    assert raw.feedback_y.shape == (64,) and raw.direction.dtype == np.int8
    # the fast axis sweeps +-A |H| = +-0.2366 * 1.0033 m at the standoff; the slow axis spans the fov
    assert 0.23 < raw.feedback_x.max() < 0.245 and -0.245 < raw.feedback_x.min() < -0.23
    assert raw.feedback_y[0] > 0.2 and raw.feedback_y[-1] < -0.2
    truth = raw.meta["truth"]
    assert truth["identity"] == 2 and truth["posture"] == "front-right" and truth["concealed"] is True
    assert truth["scene"]["capture_seed"] == 11 and raw.meta["sim_seed"] == 7
    assert 0.0 <= truth["capture"]["gap_mm"] <= 5.0 and 1.0 <= truth["capture"]["loss_db"] <= 3.0
    json.dumps(raw.meta)                                  # JSON-able, so it travels on the wire
    back = RawFrame.from_message(decode(encode(raw.to_message(seq=1))))
    assert np.array_equal(back.if_samples, raw.if_samples)


def test_same_seed_same_frame_different_seed_different(subject_frames):
    a, b = subject_frames["a"], subject_frames["b"]
    assert np.array_equal(a.if_samples, b.if_samples) and np.array_equal(a.feedback_x, b.feedback_x)
    for other in (subject_frames["seed"], subject_frames["frame"]):
        assert not np.array_equal(a.if_samples, other.if_samples)
        assert np.mean(a.if_samples != other.if_samples) > 0.5


def test_empty_scene_thermal_noise_power(scanner_cfg, sim_cfg):
    from tests.sim.conftest import QUIET
    vs = VirtualScanner(scanner_cfg, sim_cfg, seed=1)
    vs.set_scene(None)
    vs.set_noise(**{**QUIET, "thermal_counts": 5.0})
    x = vs.acquire_frame(0).if_samples.astype(float)
    assert x.var() == pytest.approx(25.0 + 1 / 12, rel=0.02)
    vs.set_noise(**QUIET)
    assert not vs.acquire_frame(0).if_samples.any()       # nothing at all without a scene or noise
    with pytest.raises(ValueError):
        vs.set_noise(thermal_count=1.0)                   # a misspelt field is rejected


def test_micro_motion_changes_the_glints_between_frames(scanner_cfg, sim_cfg):
    """Postural sway (tenths of a degree) re-phases the facets: frames of a still scene are alike, a
    swaying head's glints change; without the sway, only the receiver noise differs."""
    from sim.preview import gate_bins, peak_in_gate
    from tests.sim.conftest import QUIET
    lo, hi = gate_bins(scanner_cfg, 5.75, 6.25)

    def frames(motion: bool):
        vs = VirtualScanner(scanner_cfg, sim_cfg, seed=2)
        vs.set_scene(Subject(identity=0, posture="front-center", concealed=False, capture_seed=5))
        vs.set_noise(**{**QUIET, "micro_motion": motion})
        return [peak_in_gate(vs.acquire_frame(f).if_samples[16:48], lo, hi) for f in (0, 4, 8)]

    still, moving = frames(False), frames(True)
    # frames 4 s apart share the breathing phase (0.25 Hz): without the sway, the quiet receiver
    # returns the very same frame
    assert np.array_equal(still[0], still[1]) and np.array_equal(still[0], still[2])
    rhos = []
    for other in moving[1:]:
        face = (moving[0] > np.percentile(moving[0], 97)) | (other > np.percentile(other, 97))
        rhos.append(np.corrcoef(np.log(moving[0][face] + 1), np.log(other[face] + 1))[0, 1])
    assert min(rhos) < 0.97                               # the glints' interference changed
    assert min(rhos) > 0.0                                # but it is the same face


def test_the_per_frame_fields_are_the_whole_map_sum(scanner_cfg, sim_cfg):
    # fields_shared recomputes only the head's block per frame; fields() must be the same whatever came before
    vs = VirtualScanner(scanner_cfg, sim_cfg, seed=2)
    vs.set_scene(Subject(identity=1, posture="front-right", concealed=True, capture_seed=5))
    maps = vs.scene_maps()
    first = maps.fields(0.004, -0.002)
    maps.fields_shared(-0.01, 0.006)                     # another frame's pose in between
    again = maps.fields(0.004, -0.002)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # the layers' sum: the static field plus the head block, over the whole map
    still = maps.fields()
    for li, layer in enumerate(maps.layers):
        conv, i0, j0 = layer.moving
        m0, _ = conv.field((0.0, 0.0))
        want = layer.static_e0.copy()
        want[i0:i0 + m0.shape[0], j0:j0 + m0.shape[1]] += m0
        np.testing.assert_array_equal(still[0][li], want)
    shared = maps.fields_shared()
    with pytest.raises(ValueError, match="read-only"):
        shared[0][0, 0, 0] = 1.0


def test_subject_out_of_population_and_bad_scene(scanner_cfg, sim_cfg):
    vs = VirtualScanner(scanner_cfg, sim_cfg, seed=0)
    with pytest.raises(ValueError, match="identity=20"):
        vs.set_scene(Subject(identity=20, posture="front-center", concealed=False))
    with pytest.raises(TypeError):
        vs.set_scene({"kind": "point"})


def test_gain_drift_has_the_configured_rms(sim_cfg):
    from sim.receiver import FrameDraws, gain_drift_db
    t = np.linspace(0, 1.0, 4000)
    d = np.concatenate([gain_drift_db(t, FrameDraws.draw(np.random.default_rng(k), sim_cfg.noise)) for k in range(50)])
    assert np.sqrt(np.mean(d**2)) == pytest.approx(sim_cfg.noise.gain_drift_db, rel=0.15)


def test_target_range_lands_in_the_right_bin(quiet_scanner, scanner_cfg):
    vs = quiet_scanner
    vs.set_scene(Target(kind="plate", range_m=6.1))
    x = vs.acquire_frame(0).if_samples[30:34, 200:300].astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(128), axis=-1)).mean(axis=(0, 1))
    # (6.1 - 5.68) / 9.993 mm = 42.03 -> bin 42
    assert int(np.argmax(spec)) == round(scanner_cfg.fmcw.range_bin(6.1)) == 42
    assert math.isclose(scanner_cfg.fmcw.range_bin(6.1), 42.03, abs_tol=0.01)


def test_returns_beyond_the_range_window_are_filtered(quiet_scanner, scanner_cfg):
    from sim.scanner import if_filter_gain
    assert if_filter_gain(np.array([0.1]))[0] == pytest.approx(1.0, abs=1e-3)
    vs = quiet_scanner
    peak = {}
    for r in (6.1, 6.6):                               # 6.6 m lies beyond the window's far edge (6.32 m)
        vs.set_scene(Target(kind="plate", range_m=r))
        x = vs.acquire_frame(0).if_samples[30:34, 240:270].astype(float)
        peak[r] = np.abs(np.fft.rfft(x * np.hanning(128), axis=-1)).max()
    assert peak[6.6] < 0.1 * peak[6.1]

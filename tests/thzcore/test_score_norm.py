"""Cohort score normalisation (thzcore.score_norm) against a plain-Python reference."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from thzcore.score_norm import cohort_stats, s_norm


def _reference_stats(row: list[float], k: int) -> tuple[float, float]:
    near = sorted(row)[:k] if k > 0 else sorted(row)
    return statistics.fmean(near), statistics.pstdev(near)


def test_cohort_stats_are_the_mean_and_deviation_of_the_k_nearest():
    rng = np.random.default_rng(3)
    d = rng.uniform(0, 2, size=(7, 40))
    for k in (0, 1 + 1, 10, 40, 400):   # 0 and k > C: the whole cohort
        mu, sd = cohort_stats(d, k)
        for r in range(len(d)):
            m, s = _reference_stats(list(d[r]), min(k, 40) if k > 0 else 0)
            # sums of <= 40 terms of size <= 2: a few ulps of float64 each
            assert mu[r] == pytest.approx(m, abs=64 * np.finfo(np.float64).eps)
            assert sd[r] == pytest.approx(s, abs=1e-12)


def test_excluded_members_are_left_out_of_their_row_only():
    d = np.array([[0.1, 0.5, 0.9, 1.3], [0.1, 0.5, 0.9, 1.3]])
    exclude = np.array([[True, False, False, False], [False, False, False, False]])
    mu, sd = cohort_stats(d, 2, exclude)
    assert mu[0] == pytest.approx(0.7) and sd[0] == pytest.approx(0.2)   # 0.5, 0.9: the excluded 0.1 is skipped
    assert mu[1] == pytest.approx(0.3) and sd[1] == pytest.approx(0.2)   # 0.1, 0.5
    with pytest.raises(ValueError, match=">= 2 cohort templates"):
        cohort_stats(d[:1], 2, np.array([[True, True, True, False]]))
    with pytest.raises(ValueError, match=r"\(rows, cohort\)"):
        cohort_stats(d[0], 2)


def test_s_norm_by_hand_and_invariant_to_a_change_of_distance_scale():
    rng = np.random.default_rng(5)
    d = rng.uniform(0, 2, (3, 4))
    probe_c, tmpl_c = rng.uniform(0, 2, (3, 30)), rng.uniform(0, 2, (4, 30))
    s = s_norm(d, cohort_stats(probe_c, 10), cohort_stats(tmpl_c, 10))
    for p in range(3):
        for t in range(4):
            (mp, sp), (mt, st) = _reference_stats(list(probe_c[p]), 10), _reference_stats(list(tmpl_c[t]), 10)
            assert s[p, t] == pytest.approx(0.5 * ((d[p, t] - mp) / sp + (d[p, t] - mt) / st), rel=1e-9)
    # an affine change of every distance (a > 0) leaves the normalised score as it was: what makes one
    # threshold serve every probe and template
    a, b = 3.7, -0.4
    s2 = s_norm(a * d + b, cohort_stats(a * probe_c + b, 10), cohort_stats(a * tmpl_c + b, 10))
    np.testing.assert_allclose(s2, s, rtol=1e-9, atol=1e-9)

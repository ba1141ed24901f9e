import numpy as np

from thzcore.softmax import softmax


def test_softmax_by_hand_and_without_overflow():
    # (0, ln 3) -> (1/4, 3/4); a logit of 1000 would overflow exp() unshifted: (1, e^-1000 = 0)
    p = softmax(np.array([[0.0, np.log(3.0)], [1000.0, 0.0]]))
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(p, [[0.25, 0.75], [1.0, 0.0]], rtol=8 * eps, atol=8 * eps)


def test_softmax_is_over_the_last_axis_and_shift_invariant():
    z = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    p = softmax(z)
    assert p.dtype == np.float64 and p.shape == z.shape
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=16 * np.finfo(np.float64).eps)
    # adding a constant to every logit of a row changes nothing (the float32 input sets the tolerance)
    np.testing.assert_allclose(softmax(z + np.float32(7)), p, rtol=0, atol=64 * np.finfo(np.float32).eps)

"""`thz evaluate --fusion N`: verification from N consecutive scans of a person, fused (thzcore.fusion).

A window is N consecutive ROIs (in capture order, the ROIs with a face found) of one cell: one identity,
posture and concealment, as the live system sees a person standing in one posture for N scans. Every
window of a cell is taken (stride 1), so a cell of k ROIs gives k - N + 1. Probes are the windows of
concealed ROIs, references the windows of unconcealed ROIs (enrolment fuses as verification does); each
window's representation is fused with the ROI-quality weights (`thzcore.fusion`).

So that every N is measured on the same people and postures, only cells holding at least max(N) ROIs
take part, for every N including N = 1 (which is then the per-scan protocol on those cells).
Metrics on the fused probes and references are the per-scan ones (`training.metrics`): all-posture and
same-posture ROC AUC / EER / TAR@FAR 1% and 0.1% over every probe x reference pair, rank-1 against
per-identity templates of the references; with the predicted postures, the claims against people enrolled
from the reference windows (`enrolled_metrics`; a window's posture is the one most of its ROIs are given;
with a cohort, also S-normalised against it).

The dataset's captures are independent draws of pose, placement and noise; consecutive live scans of
one person are likely more alike, so the gain measured here is an upper bound for the live system.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from thzcore.fusion import fuse, fusion_weights
from training.metrics import (Cohort, Distance, cosine_distance, enrolled_metrics, rank1_identification, unit_mean,
                              verification_metrics)

Fuse = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (n, ...) representations, (n,) weights -> one


def scan_windows(identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray, capture: np.ndarray, n: int,
                 min_cell: int | None = None) -> list[np.ndarray]:
    """Row indices of every window of `n` consecutive ROIs of one (identity, posture, concealed) cell.

    Cells are visited in sorted order, ROIs by capture index; a cell with fewer than `min_cell` (default n)
    ROIs gives no window.
    """
    if n < 1:
        raise ValueError(f"fusion over {n} scans: N must be >= 1")
    need = max(n, min_cell or n)
    keys = np.stack([identity, posture, concealed.astype(np.int64)], 1)
    out: list[np.ndarray] = []
    for key in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys == key).all(1))
        rows = rows[np.argsort(capture[rows], kind="stable")]
        if len(rows) < need:
            continue
        out += [rows[s:s + n] for s in range(len(rows) - n + 1)]
    return out


def unit_fuse(rep: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The fusion of unit-vector representations (the network's embedding and the vector baselines)."""
    return fuse(np.asarray(rep, np.float64).reshape(len(rep), -1), w)


def fused_metrics(rep: np.ndarray, identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray,
                  capture: np.ndarray, quality: np.ndarray | None, ns: Sequence[int], weight: str = "roi_quality",
                  distance: Distance = cosine_distance, template: Callable[[np.ndarray], np.ndarray] = unit_mean,
                  fuse_fn: Fuse = unit_fuse, predicted_posture: np.ndarray | None = None,
                  cohort: Cohort | None = None) -> dict[int, dict]:
    """{N: biometric metrics of fused probes vs fused references} for each N in `ns` (module doc)."""
    ns = sorted(set(int(n) for n in ns) | {1})
    out: dict[int, dict] = {}
    for n in ns:
        wins = scan_windows(identity, posture, concealed, capture, n, max(ns))
        if not wins:
            raise ValueError(f"--fusion {max(ns)}: no identity, posture and concealment of the evaluated images has "
                             f"{max(ns)} ROIs (a test split holds one capture of each); fuse on whole datasets: "
                             "--protocol heldout or openset, or --split all")
        fused = np.stack([fuse_fn(rep[w], fusion_weights(None if quality is None else quality[w], len(w), weight))
                          for w in wins])
        first = np.array([w[0] for w in wins])
        ident, post, conc = identity[first], posture[first], concealed[first]
        probes, refs = np.flatnonzero(conc), np.flatnonzero(~conc)
        if not len(probes) or not len(refs) or len(np.unique(ident[refs])) < 2:
            raise ValueError(f"fusion over {n} scans: too few concealed or unconcealed windows "
                             f"({len(probes)} / {len(refs)}) of {max(ns)} ROIs each")
        m = verification_metrics(fused, ident, probes, refs, post, distance)
        m["rank1_identification"] = rank1_identification(fused, ident, probes, refs, distance, template)
        if predicted_posture is not None:
            pp = np.array([np.bincount(predicted_posture[w]).argmax() for w in wins])
            m |= enrolled_metrics(fused, ident, post, probes, refs, pp, distance, template, cohort=cohort)
        out[n] = m | {"n_probes": int(len(probes)), "n_references": int(len(refs)),
                      "n_cells": int(len({(int(i), int(p), bool(c)) for i, p, c in zip(ident, post, conc)}))}
    return out

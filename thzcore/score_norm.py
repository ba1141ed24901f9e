"""Cohort score normalisation (adaptive S-norm): a claim's distance measured against what is usual for its probe
and for its template, so that one threshold serves every person and posture.

The one definition, used by the gallery (inference.gallery, when the bundle carries a cohort) and by `thz
evaluate` (training.metrics.enrolled_metrics, rule `enrolled_snorm`). A cohort is a set of templates of people
who are neither enrolled nor probing (the model's training identities: their unit-mean template per posture,
from unconcealed scans). For a probe e claiming a template t, both in posture p:

    d_s(e, t) = ((d - mu_e) / sigma_e + (d - mu_t) / sigma_t) / 2

d the cosine distance; mu_e, sigma_e the mean and standard deviation of the probe's `top_k` smallest
distances to the cohort templates of posture p (T-norm: how near this probe lies to people in general),
mu_t, sigma_t the same of the template (Z-norm: how near this template lies to people in general). Negative
d_s: the pair is nearer than the people nearest to either. Symmetric adaptive S-norm after Cumani et al.,
"Comparison of speaker recognition approaches for real applications", Interspeech 2011, and Matejka et al.,
"Analysis of score normalization in multilingual speaker recognition", Interspeech 2017 (top-K cohort).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from thzcore.bundle import file_model_id   # sha256 of a file, 16 hex digits: the cohort's hash too
from thzcore.fusion import fuse

TOP_K = 100           # cohort templates per posture in the statistics (all of them when fewer)
_SIGMA_FLOOR = 1e-6   # a cohort at one distance from the vector (degenerate) still divides


def cohort_stats(d: np.ndarray, top_k: int = TOP_K, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu (n,), sigma (n,)) of each row's `top_k` smallest distances (n, C) to a cohort; all when top_k <= 0.

    `exclude` (n, C) bool leaves cohort members out of a row (the row's own person, where the cohort and the
    scored people overlap). A row needs at least two members left.
    """
    d = np.asarray(d, np.float64)
    if d.ndim != 2:
        raise ValueError(f"cohort distances must be (rows, cohort), got shape {d.shape}")
    if exclude is not None:
        d = np.where(exclude, np.inf, d)
    left = np.isfinite(d).sum(1)
    if d.shape[0] and left.min() < 2:
        raise ValueError(f"score normalisation needs >= 2 cohort templates per row, a row has {int(left.min())}")
    k = min(top_k, d.shape[1]) if top_k > 0 else d.shape[1]
    near = np.sort(d, axis=1)[:, :k]               # the k nearest (inf, excluded, last)
    kept = np.isfinite(near)
    n = kept.sum(1)
    near = np.where(kept, near, 0.0)
    mu = near.sum(1) / n
    var = (np.where(kept, near - mu[:, None], 0.0) ** 2).sum(1) / n
    return mu, np.maximum(np.sqrt(var), _SIGMA_FLOOR)


def s_norm(d: np.ndarray, probe: tuple[np.ndarray, np.ndarray], template: tuple[np.ndarray, np.ndarray]
           ) -> np.ndarray:
    """d_s = ((d - mu_e) / sigma_e + (d - mu_t) / sigma_t) / 2 for d (P, T), probe stats (P,), template stats (T,)."""
    (mu_e, sd_e), (mu_t, sd_t) = probe, template
    d = np.asarray(d, np.float64)
    return 0.5 * ((d - mu_e[:, None]) / sd_e[:, None] + (d - mu_t[None, :]) / sd_t[None, :])


def posture_columns(cohort_posture: np.ndarray, posture: int) -> np.ndarray:
    """The cohort templates of `posture` (a bool mask); all of them when fewer than two are in that posture."""
    cols = np.asarray(cohort_posture) == posture
    return cols if cols.sum() >= 2 else np.ones_like(cols)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, E) x (m, E) unit vectors -> (n, m) distances 1 - a.b (float64): a bundle's cohort's distance."""
    return 1.0 - np.atleast_2d(np.asarray(a, np.float64)) @ np.asarray(b, np.float64).T


@dataclass(frozen=True, eq=False)
class Cohort:
    """Templates of people who are not scored: `templates` (C, ...) in the scored representation (a bundle's:
    unit embeddings (C, E); a baseline's: its own), their `posture` (indices into POSTURES) and `identity` (C,).
    `overlap`: the cohort's identity i is the scored data's person i (one population), so a probe's or template's
    own person is left out of its statistics; otherwise the cohort is other people whatever their ids. A bundle
    keeps its cohort in `cohort.npz` (`save`, `load`), read once and used by every claim the gallery decides."""

    templates: np.ndarray
    posture: np.ndarray
    identity: np.ndarray
    overlap: bool = False
    top_k: int = TOP_K
    FILE: ClassVar[str] = "cohort.npz"

    @classmethod
    def of(cls, rep: np.ndarray, identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray,
           template: Callable[[np.ndarray], np.ndarray] = fuse, overlap: bool = False, top_k: int = TOP_K
           ) -> "Cohort":
        """One template per (identity, posture) of the unconcealed rows of `rep`, by `template` (default: the
        unit mean)."""
        cells = sorted({(int(i), int(p)) for i, p, c in zip(identity, posture, concealed) if not c})
        if len(cells) < 2:
            raise ValueError(f"a score-normalisation cohort needs >= 2 unconcealed templates, got {len(cells)}")
        reps = [template(rep[(identity == i) & (posture == p) & ~concealed]) for i, p in cells]
        return cls(np.stack(reps), np.array([p for _, p in cells], np.int64), np.array([i for i, _ in cells], np.int64),
                   overlap, top_k)

    def stats(self, reps: np.ndarray, posture: int, identity: np.ndarray | None = None,
              distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = _cosine) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of `reps` (n, ...) against the cohort's templates of `posture` (all when it has < 2);
        `identity` (n,) the scored rows' people, left out of their own statistics when the cohort overlaps."""
        cols = posture_columns(self.posture, posture)
        d = np.asarray(distance(reps, self.templates[cols]), np.float64).reshape(len(reps), -1)
        own = np.asarray(identity)[:, None] == self.identity[cols][None, :] if self.overlap else None
        return cohort_stats(d, self.top_k, own)

    def normalise(self, distance: float, probe: np.ndarray, template: np.ndarray, posture: int) -> float:
        """The S-normalised cosine distance of one claim: `probe` and `template` unit vectors (E,), `distance` theirs."""
        return float(s_norm(np.array([[distance]]), self.stats(probe[None], posture),
                            self.stats(template[None], posture))[0, 0])

    def save(self, path: str | Path) -> str:
        """Write the cohort (npz, no pickles; templates as float32) and return its sha256, 16 hex digits."""
        path = Path(path)
        with path.open("wb") as f:
            np.savez(f, templates=np.asarray(self.templates, np.float32), posture=self.posture, identity=self.identity)
        return file_model_id(path)

    @classmethod
    def load(cls, path: str | Path, sha256_16: str, embedding_size: int, top_k: int = TOP_K) -> "Cohort":
        """Read a bundle's cohort file, checked against the manifest's hash and embedding size (ValueError naming
        the file); the templates as float64, converted once here rather than at every claim."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: the manifest's score-normalisation cohort is missing; re-export the bundle")
        have = file_model_id(path)
        if have != sha256_16:
            raise ValueError(f"{path}: sha256 {have} is not the manifest's {sha256_16}: the cohort was altered")
        try:
            with np.load(path, allow_pickle=False) as z:
                t, post, ident = (np.asarray(z[k]) for k in ("templates", "posture", "identity"))
        except (KeyError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a cohort file ({type(exc).__name__}: {exc})") from None
        if t.ndim != 2 or len(t) < 2 or len(post) != len(t) or len(ident) != len(t) or t.shape[1] != embedding_size:
            raise ValueError(f"{path}: a cohort needs >= 2 templates of the model's embedding size {embedding_size} "
                             f"with a posture and identity each, got templates {t.shape}, {len(post)} postures, "
                             f"{len(ident)} identities")
        if not np.isfinite(t).all():
            raise ValueError(f"{path}: cohort templates hold NaN or infinity")
        t = np.ascontiguousarray(t, np.float64)
        t.flags.writeable = False
        return cls(t, post.astype(np.int64), ident.astype(np.int64), False, top_k)

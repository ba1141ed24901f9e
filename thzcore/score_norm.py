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

from pathlib import Path

import numpy as np

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


class PostureCohort:
    """A bundle's cohort (`cohort.npz`: `templates` float32 (C, E) unit rows, `posture` (C,) indices into
    POSTURES, `identity` (C,)), read once, used by every S-normalised claim of the gallery."""

    FILE = "cohort.npz"

    def __init__(self, templates: np.ndarray, posture: np.ndarray, identity: np.ndarray, top_k: int = TOP_K):
        t = np.ascontiguousarray(templates, np.float32)
        if t.ndim != 2 or len(t) < 2 or len(posture) != len(t) or len(identity) != len(t):
            raise ValueError(f"a cohort needs >= 2 templates (C, E) with C postures and identities, got templates "
                             f"{t.shape}, {len(posture)} postures, {len(identity)} identities")
        if not np.isfinite(t).all():
            raise ValueError("cohort templates hold NaN or infinity")
        self.templates, self.top_k = t, int(top_k)
        self.posture, self.identity = np.asarray(posture, np.int64), np.asarray(identity, np.int64)
        self.templates.flags.writeable = False

    def save(self, path: str | Path) -> str:
        """Write the cohort (npz, no pickles) and return its sha256, 16 hex digits."""
        path = Path(path)
        with path.open("wb") as f:
            np.savez(f, templates=self.templates, posture=self.posture, identity=self.identity)
        return file_sha256_16(path)

    @classmethod
    def load(cls, path: str | Path, sha256_16: str, embedding_size: int, top_k: int = TOP_K) -> "PostureCohort":
        """Read a cohort file, checked against the manifest's hash and embedding size (ValueError naming the file)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: the manifest's score-normalisation cohort is missing; re-export the bundle")
        have = file_sha256_16(path)
        if have != sha256_16:
            raise ValueError(f"{path}: sha256 {have} is not the manifest's {sha256_16}: the cohort was altered")
        try:
            with np.load(path, allow_pickle=False) as z:
                c = cls(z["templates"], z["posture"], z["identity"], top_k)
        except (KeyError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a cohort file ({type(exc).__name__}: {exc})") from None
        if c.templates.shape[1] != embedding_size:
            raise ValueError(f"{path}: cohort templates of size {c.templates.shape[1]}, the model's embeddings are "
                             f"{embedding_size}")
        return c

    def stats(self, vectors: np.ndarray, posture: int) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of unit `vectors` (n, E) against the cohort's templates of `posture` (cosine distance)."""
        cols = posture_columns(self.posture, posture)
        d = 1.0 - np.atleast_2d(np.asarray(vectors, np.float64)) @ self.templates[cols].astype(np.float64).T
        return cohort_stats(d, self.top_k)

    def normalise(self, distance: float, probe: np.ndarray, template: np.ndarray, posture: int) -> float:
        """The S-normalised distance of one claim: `probe` and `template` unit vectors (E,), `distance` theirs."""
        return float(s_norm(np.array([[distance]]), self.stats(probe, posture), self.stats(template, posture))[0, 0])


def file_sha256_16(path: str | Path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

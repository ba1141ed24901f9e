"""Decisions from embeddings: cosine distance, 1:1 verification, 1:N identification with open-set rejection.

Embeddings are L2-normalised, so the cosine distance is d(a, b) = 1 - a.b in [0, 2]. A subject's
score is the distance to their nearest enrolled template (one per posture and capture).
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from thzcore.fusion import fuse
from thzcore.labels import POSTURES
from thzcore.score_norm import Cohort


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """d = 1 - a.b for L2-normalised rows: a (E,) or (N, E) against b (M, E) -> (M,) or (N, M)."""
    a = np.asarray(a, np.float64)
    b = np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape} vs {b.shape}")
    return 1.0 - a @ b.T


@dataclass(frozen=True)
class Verification:
    """A decided claim: `distance` is what the threshold was applied to (the S-normalised distance when `score`
    is "s_norm", then `raw_distance` is the cosine distance it came from)."""

    claim: str
    distance: float
    threshold: float
    accepted: bool
    score: str = "cosine"
    raw_distance: float | None = None

    def to_json(self) -> dict:
        out = {"claim": self.claim, "distance": round(self.distance, 6), "threshold": self.threshold,
               "accepted": self.accepted}
        if self.score != "cosine":
            out |= {"score": self.score, "raw_distance": round(float(self.raw_distance), 6)}
        return out


@dataclass(frozen=True)
class Identification:
    """Best candidates (subject, distance), nearest first; `identity` is None when all are rejected."""

    candidates: list[tuple[str, float]]
    threshold: float
    identity: str | None

    def to_json(self) -> dict:
        return {"identity": self.identity, "threshold": self.threshold,
                "candidates": [{"subject": s, "distance": round(d, 6)} for s, d in self.candidates]}


def verify(embedding: np.ndarray, claim: str, templates: np.ndarray, threshold: float) -> Verification:
    """1:1: accept the claim when the nearest of the claimed subject's templates is within `threshold`."""
    if templates.size == 0:
        raise ValueError(f"subject {claim!r} has no templates to verify against")
    d = float(np.min(cosine_distance(embedding, templates)))
    return Verification(claim, d, float(threshold), d <= threshold)


def verify_in_posture(embedding: np.ndarray, claim: str, templates: np.ndarray, template_postures: list[str],
                      posture: str, threshold: float, cohort: Cohort | None = None) -> Verification:
    """1:1 by the claimed person's template in the probe's posture: the unit mean of their templates enrolled
    in `posture` (all of them when none is), accepted within `threshold` (BundleManifest.posture_template_threshold;
    training.metrics.enrolled_metrics measures this rule). With a `cohort`, the distance is S-normalised against
    it first and `threshold` is the bundle's score_norm threshold (thzcore.score_norm; the rule enrolled_snorm)."""
    if templates.size == 0:
        raise ValueError(f"subject {claim!r} has no templates to verify against")
    same = np.array([p == posture for p in template_postures], bool)
    t = fuse(np.asarray(templates)[same if same.any() else slice(None)])   # their unit mean
    d = float(cosine_distance(embedding, t[None])[0])
    if cohort is None:
        return Verification(claim, d, float(threshold), d <= threshold)
    s = cohort.normalise(d, np.asarray(embedding, np.float64).ravel(), t, POSTURES.index(posture))
    return Verification(claim, s, float(threshold), s <= threshold, "s_norm", d)


class SearchUnavailable(RuntimeError):
    """The 1:N search asked for a library that is not installed (faiss-cpu)."""


# OpenBLAS runs a matrix-vector product of fewer elements than this on the calling thread anyway
# (interface/gemv.c: m * n < 2304 * GEMM_MULTITHREAD_THRESHOLD, 4 by default), so no limit is set there
_GEMV_THREADED_MIN = 2304 * 4
_BLAS_LOCK = threading.Lock()   # one limit at a time: concurrent save/restore pairs would leave the wrong count


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _blas_threads(threads: int, elements: int) -> Iterator[None]:
    """BLAS limited to `threads` threads for the block (0: the library's own choice). The limit is process-wide
    (OpenBLAS keeps one thread count), so other threads' BLAS calls inside the block also run with it."""
    if threads <= 0 or elements < _GEMV_THREADED_MIN:
        yield
        return
    with _BLAS_LOCK, _blas_controller().limit(limits=threads):
        yield


class TemplateMatrix:
    """Every enrolled template of a gallery in one float32 matrix, rows grouped by subject.

    1:N search is one matrix-vector product and a per-subject maximum of the similarities instead of a
    Python loop over subjects with a float64 copy each: the distances agree with cosine_distance to
    float32 rounding (|d32 - d64| <= E eps32 for unit vectors of size E).

    Two backends behind `search`, chosen by size: NumPy (`matrix @ e`, BLAS limited to `threads`), and
    from `faiss_min_templates` templates on (None: never) an exact inner-product faiss index
    (IndexFlatIP, OpenMP limited to `threads` for the calling thread), which returns the top templates
    without writing every similarity; both give the same subjects in the same order, ties broken by
    subject id. The faiss index holds the one copy of the templates (`matrix` is a view of it).
    """

    def __init__(self, gallery: dict[str, np.ndarray], *, faiss_min_templates: int | None = None,
                 threads: int = 1) -> None:
        items = sorted((s, np.atleast_2d(t)) for s, t in gallery.items() if np.size(t))
        matrix = (np.ascontiguousarray(np.concatenate([t for _, t in items]), dtype=np.float32)
                  if items else np.zeros((0, 0), np.float32))
        self._adopt([s for s, _ in items], np.array([t.shape[0] for _, t in items], dtype=np.int64), matrix,
                    faiss_min_templates, threads)

    @classmethod
    def from_rows(cls, subjects: list[str], counts: np.ndarray, matrix: np.ndarray, *,
                  faiss_min_templates: int | None = None, threads: int = 1) -> "TemplateMatrix":
        """Adopt `matrix` (float32, C order, rows grouped by subject in `subjects` order, `counts` rows each)
        without copying it; `subjects` must be sorted and distinct (the order the search breaks ties by)."""
        counts = np.asarray(counts, dtype=np.int64)
        if any(a >= b for a, b in zip(subjects, subjects[1:])):
            raise ValueError("subjects must be sorted and distinct")
        if matrix.dtype != np.float32 or not matrix.flags.c_contiguous or matrix.ndim != 2 \
                or len(counts) != len(subjects) or int(counts.sum()) != matrix.shape[0] or np.any(counts < 1):
            raise ValueError(f"a {matrix.dtype} {matrix.shape} matrix does not hold {int(counts.sum())} rows "
                             f"for {len(subjects)} subjects as C-ordered float32")
        self = cls.__new__(cls)
        self._adopt(list(subjects), counts, matrix, faiss_min_templates, threads)
        return self

    def _adopt(self, subjects: list[str], counts: np.ndarray, matrix: np.ndarray, faiss_min_templates: int | None,
               threads: int) -> None:
        self.faiss_min_templates = faiss_min_templates
        self.counts = counts
        self.subjects = subjects
        self.size = int(matrix.shape[1]) if subjects else 0
        self.threads = int(threads)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if subjects else counts
        self.max_count = int(counts.max()) if subjects else 0
        self.backend = ("faiss" if faiss_min_templates is not None and matrix.shape[0] >= faiss_min_templates
                        and subjects else "numpy")
        self._faiss = None
        if self.backend == "faiss":
            self._faiss, matrix = _faiss_index(matrix)
        matrix.flags.writeable = False
        self.matrix = matrix

    def __len__(self) -> int:
        return len(self.subjects)

    def with_rows(self, subject: str, rows: np.ndarray) -> "TemplateMatrix":
        """A new index with `rows` (K, E) appended to `subject`'s templates (a new subject in its sorted
        place): one copy of the matrix and nothing read from the gallery's file, which is what an enrolment
        costs instead of a rebuild (`thz bench gallery`). This index is left as it was."""
        rows = np.atleast_2d(np.asarray(rows, np.float32))
        if self.templates and rows.shape[1] != self.size:
            raise ValueError(f"embedding sizes differ: {rows.shape} vs templates of {self.size}")
        i = bisect.bisect_left(self.subjects, subject)
        known = i < len(self.subjects) and self.subjects[i] == subject
        at = int(self.counts[:i + known].sum())           # after the templates of every subject up to this one
        matrix = (np.concatenate([self.matrix[:at], rows, self.matrix[at:]]) if self.templates
                  else np.array(rows, np.float32, order="C"))
        counts = self.counts.copy()
        subjects = list(self.subjects)
        if known:
            counts[i] += rows.shape[0]
        else:
            subjects.insert(i, subject)
            counts = np.insert(counts, i, rows.shape[0])
        return TemplateMatrix.from_rows(subjects, counts, np.ascontiguousarray(matrix, np.float32),
                                        faiss_min_templates=self.faiss_min_templates, threads=self.threads)

    @property
    def templates(self) -> int:
        return int(self.matrix.shape[0])

    def rows(self, i: int) -> np.ndarray:
        """The templates of subject `i` (a read-only view of the matrix)."""
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.templates
        return self.matrix[self.starts[i]:end]

    def _probe(self, embedding: np.ndarray) -> np.ndarray:
        e = np.ascontiguousarray(np.asarray(embedding, np.float32).ravel())
        if e.size != self.size:
            raise ValueError(f"embedding sizes differ: {e.shape} vs templates of {self.size}")
        return e

    def nearest(self, embedding: np.ndarray) -> np.ndarray:
        """Distance of each subject's nearest template to `embedding` (float64, in self.subjects order)."""
        e = self._probe(embedding)
        with _blas_threads(self.threads, self.matrix.size):
            sims = self.matrix @ e
        return 1.0 - np.maximum.reduceat(sims, self.starts).astype(np.float64)

    def search(self, embedding: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest subjects as (subject index, distance), nearest first; ties broken by subject index."""
        if not len(self) or k < 1:
            return []
        e = self._probe(embedding)
        if self._faiss is not None:
            found = self._search_faiss(e, k)
            if found is not None:
                return found
        return _k_smallest(self.nearest(e), k)

    def _search_faiss(self, e: np.ndarray, k: int) -> list[tuple[int, float]] | None:
        """Top templates from faiss, reduced to subjects; None when a tie at the cut could hide a subject."""
        import faiss

        # the (k-1) max_count + 1 best templates hold at least k subjects (pigeonhole), and the first k
        # subjects met in similarity order are the k nearest; one template more tells a tie at the cut
        want = min(self.templates, (min(k, len(self)) - 1) * self.max_count + 2)
        if self.threads > 0:
            faiss.omp_set_num_threads(self.threads)   # OpenMP's count is per calling thread
        sims, labels = self._faiss.search(e[None, :], want)
        sims, labels = sims[0], labels[0]
        subj = np.searchsorted(self.starts, labels, side="right") - 1
        _, first = np.unique(subj, return_index=True)   # a subject's first row is its best template
        d = 1.0 - sims[first].astype(np.float64)
        cand = subj[first]
        order = np.lexsort((cand, d))[:k]
        if want < self.templates and sims[first][order[-1]] <= sims[-1]:
            return None   # the k-th subject ties the last template fetched: one not fetched may tie too
        return [(int(cand[i]), float(d[i])) for i in order]


def _k_smallest(d: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k smallest distances as (index, distance), ties broken by index."""
    k = min(k, d.size)
    # every index within the k-th distance is a candidate, then an exact (distance, index) sort of those few
    kth = np.partition(d, k - 1)[k - 1]
    cand = np.nonzero(d <= kth)[0]
    order = cand[np.lexsort((cand, d[cand]))][:k]
    return [(int(i), float(d[i])) for i in order]


class _IndexStorage:
    """The faiss index's own copy of the vectors, as an array interface that keeps the index alive: every
    view of the array (the gallery's per-subject templates) holds the index, so none outlives its memory."""

    def __init__(self, index, n: int, dim: int) -> None:
        import faiss

        raw = faiss.rev_swig_ptr(index.get_xb(), n * dim)   # a bare pointer: owns and holds nothing
        self._index = index
        self.__array_interface__ = {"shape": (n, dim), "typestr": "<f4", "version": 3,
                                    "data": (raw.__array_interface__["data"][0], False)}


def _faiss_index(matrix: np.ndarray):
    """An exact inner-product faiss index of `matrix` and a view of the index's own copy of it."""
    try:
        import faiss
    except ImportError:
        raise SearchUnavailable("inference.faiss_min_templates is set but faiss-cpu is not installed: "
                                "`pip install faiss-cpu`, or unset inference.faiss_min_templates") from None
    n, dim = matrix.shape
    index = faiss.IndexFlatIP(dim)
    index.add(matrix)
    return index, np.asarray(_IndexStorage(index, n, dim))


def identify(embedding: np.ndarray, gallery: dict[str, np.ndarray] | TemplateMatrix, threshold: float,
             top_k: int = 3) -> Identification:
    """1:N: rank subjects by nearest-template distance; open set: reject when the best is above threshold."""
    index = gallery if isinstance(gallery, TemplateMatrix) else TemplateMatrix(gallery)
    scores = [(index.subjects[i], d) for i, d in index.search(embedding, top_k)]
    best = scores[0] if scores else None
    identity = best[0] if best is not None and best[1] <= threshold else None
    return Identification(scores, float(threshold), identity)

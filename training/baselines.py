"""Classical baselines beside every evaluation: how hard a dataset is before (and beside) any network.

Verification baselines: a representation of each 64x64 THz ROI and a distance, run through the
network's own protocols (`training.metrics.protocol_metrics`: triplets with every same-posture
negative, all-posture and same-posture ROC AUC / EER / TAR@FAR 1% and 0.1%, rank-1 against
per-identity templates) plus posture by nearest neighbour:

    pixel   raw-pixel cosine: x flattened, L2-normalised; d = 1 - cos
    ncc     normalised cross-correlation (zero shift): x minus its mean, L2-normalised; d = 1 - NCC
    ssim    SSIM template matching: d = 1 - SSIM(a, b), `training.losses.ssim` (the project's one SSIM);
            a template is the mean image of the identity's references
    pca     PCA-whitened cosine: k = min(50, n_fit - 1) principal components, whitened, L2-normalised
    fisher  Fisherfaces (Belhumeur et al. 1997): PCA to k = min(50, n_fit - n_identities) components,
            then LDA on the identity labels to min(n_identities - 1, k) dimensions, L2-normalised, cosine

pca and fisher are fitted (scikit-learn) on a FIT SET only: the train split of the evaluated dataset
minus every evaluated image (the default), or the train split of another dataset (`--fit-data`;
for new people, the dataset the network trained on). Posture by nearest neighbour: each evaluated image
takes the posture of its nearest fit-set image under the method's distance.

Reconstruction baselines, on the network's reconstruction targets (each concealed anchor's paired
unconcealed capture) and with its SSIM / PSNR (`training.metrics.reconstruction_metrics`):

    oracle         the mean of the person's OTHER unconcealed captures in that posture: of the train split
                   when a held-back split is evaluated, of any split when all are (`oracle_pool`)
    posture_mean   identity-blind: the mean unconcealed fit-set image of that posture, of the other
                   people only when the fit set holds the evaluated people (`same_people`)
    second_capture another real unconcealed capture of the same person and posture (the nearest
                   capture index to the target's, any split): how alike two real scans of one face are
    concealed      the concealed input itself

Each predictor's identity score (`identity_score`): its image embedded by the evaluated network and
verified against the anchor's own target (genuine) and the other people's targets (impostors).

References: Turk & Pentland, "Eigenfaces for recognition", J. Cogn. Neurosci. 1991; Belhumeur,
Hespanha & Kriegman, "Eigenfaces vs. Fisherfaces", IEEE TPAMI 1997; Wang et al. 2004 (SSIM).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thzcore.labels import POSTURES
from thzcore.logs import get_logger
from training.data import ThzData, manifest_hash
from training.fusion import fused_metrics, unit_fuse
from training.metrics import (Cohort, cosine_distance, posture_metrics, protocol_metrics, reconstruction_metrics,
                              unit_mean, biometrics)
from training.pairwise_ssim import ssim_matrix
from training.predict import split_protocol

log = get_logger(__name__)

METHODS = ("pixel", "ncc", "ssim", "pca", "fisher")
RECONSTRUCTIONS = ("oracle", "posture_mean", "second_capture", "concealed")
PCA_COMPONENTS = 50          # at most; fewer when the fit set is small
PROGRESS_PAIRS = 20_000      # SSIM matrices with at least this many pairs get a progress bar
FULL_SVD_MAX = 500           # fit sets up to this size get the exact SVD, larger ones a seeded randomized one


def _pca(k: int, n: int, whiten: bool):
    """scikit-learn PCA with k components for n fit images: exact SVD, or seeded randomized SVD for large n.

    The exact SVD of data/full's 1000 x 4096 train images took 32 s on the shared cores, the randomized
    one (40 oversamples, 7 power iterations) 3.8 s, with the 50th variance within 0.03% of the exact.
    """
    from sklearn.decomposition import PCA
    if n <= FULL_SVD_MAX:
        return PCA(n_components=k, whiten=whiten, svd_solver="full")
    return PCA(n_components=k, whiten=whiten, svd_solver="randomized", random_state=0, n_oversamples=40,
               iterated_power=7)


@dataclass
class FitSet:
    """The labelled images the trained baselines are fitted on, and posture NN's gallery."""

    images: np.ndarray        # (n, 1, 64, 64) float32
    identity: np.ndarray      # (n,)
    posture: np.ndarray       # (n,)
    concealed: np.ndarray     # (n,) bool
    source: str               # what it is, for the report
    same_dataset: bool        # drawn from the evaluated dataset
    same_people: bool         # an identity number means the same person here and in the evaluated dataset

    def cohort(self, rep: np.ndarray, template=unit_mean) -> Cohort:
        """The score-normalisation cohort of a representation `rep` of these images (thzcore.score_norm.Cohort):
        one template per person and posture from the unconcealed images."""
        return Cohort.of(rep, self.identity, self.posture, self.concealed, template, overlap=self.same_people)

    def describe(self) -> dict:
        return {"source": self.source, "n_images": int(len(self.identity)),
                "n_identities": int(len(np.unique(self.identity))), "same_dataset": self.same_dataset,
                "same_people": self.same_people}


def _population_seed(root: Path) -> int | None:
    """The builder's population seed from `dataset.json` (written by `thz sim dataset`), None when unknown."""
    import json
    try:
        return json.loads((Path(root) / "dataset.json").read_text())["plan"]["population_seed"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def same_people(a: ThzData, b: ThzData) -> bool:
    """Whether identity i of `a` is the person i of `b`: one dataset, or two builds of one population seed.

    Unknown provenance (a lab's import without `dataset.json`) counts as different people.
    """
    if Path(a.root).resolve() == Path(b.root).resolve():
        return True
    pa, pb = _population_seed(a.root), _population_seed(b.root)
    return pa is not None and pa == pb


def fit_set(data: ThzData, train_mask: np.ndarray, evaluated: np.ndarray, fit_data: ThzData | None = None) -> FitSet:
    """The fit set: the train split of `fit_data` when given, else `train_mask` of `data` minus `evaluated`.

    `train_mask` is taken before any `--identities` restriction (a run trains on every train identity),
    `evaluated` is the mask of the evaluated images: nothing evaluated is ever fitted on (also when
    `fit_data` is the evaluated dataset again).
    """
    if fit_data is not None and Path(fit_data.root).resolve() == Path(data.root).resolve():
        fit_data = None   # the evaluated dataset itself: its evaluated images stay out of the fit all the same
    if fit_data is not None:
        sel = np.flatnonzero(fit_data.split == "train")
        src, d, same, people = f"train split of {fit_data.root}", fit_data, False, same_people(data, fit_data)
        if not len(sel):
            raise ValueError(f"--fit-data {fit_data.root} has no train split to fit the baselines on")
    else:
        sel = np.flatnonzero(train_mask & ~evaluated)
        src, d, same, people = f"train split of {data.root} minus the evaluated images", data, True, True
        if not len(sel):
            raise ValueError("no train-split image is left to fit the baselines on once the evaluated images are "
                             "excluded (e.g. --split all or train): give --fit-data DIR (e.g. the dataset the "
                             "network trained on) or evaluate fewer identities with --identities")
    if len(np.unique(d.identity[sel])) < 2:
        raise ValueError(f"the baselines' fit set ({src}) holds fewer than 2 identities: LDA needs 2 or more")
    return FitSet(d.images[sel], d.identity[sel], d.posture[sel], d.concealed[sel], src, same, people)


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float64).reshape(len(images), -1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)   # an all-zero row stays zero: distance 1 to everything


class Method:
    """A representation (`represent`), a distance between representations and a template rule."""

    key = ""
    label = ""
    distance = staticmethod(cosine_distance)
    template = staticmethod(unit_mean)
    fuse = staticmethod(unit_fuse)   # N scans -> one representation (`thz evaluate --fusion`)

    def fit(self, fit: FitSet) -> None:
        """Learn from the fit set (only pca and fisher learn anything)."""

    def represent(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict:
        return {}


class Pixel(Method):
    key, label = "pixel", "raw-pixel cosine"

    def represent(self, images):
        return _unit_rows(_flat(images))


class Ncc(Method):
    key, label = "ncc", "normalised cross-correlation"

    def represent(self, images):
        x = _flat(images)
        return _unit_rows(x - x.mean(1, keepdims=True))


class Ssim(Method):
    key, label = "ssim", "SSIM template matching"

    def __init__(self, progress: bool = True):
        self.progress = progress

    def represent(self, images):
        return np.asarray(images, np.float32).reshape(len(images), *np.shape(images)[-2:])

    def distance(self, a, b):  # type: ignore[override]
        n_pairs = len(a) * len(b)
        if not (self.progress and n_pairs >= PROGRESS_PAIRS):
            return 1.0 - ssim_matrix(a, b).astype(np.float64)
        from tqdm import tqdm
        with tqdm(total=n_pairs, desc=f"SSIM {len(a)}x{len(b)} pairs", unit="pair", unit_scale=True,
                  leave=False) as bar:
            return 1.0 - ssim_matrix(a, b, progress=bar.update).astype(np.float64)

    @staticmethod
    def template(x):  # type: ignore[override]
        return x.mean(0)

    @staticmethod
    def fuse(x, w):  # type: ignore[override]
        """N images -> their weighted mean image (as the template of references is their mean)."""
        return np.tensordot(np.asarray(w, np.float64) / np.sum(w), np.asarray(x, np.float64), 1).astype(np.float32)


class Pca(Method):
    key = "pca"

    def fit(self, fit: FitSet) -> None:
        x = _flat(fit.images)
        k = min(PCA_COMPONENTS, len(x) - 1, x.shape[1])
        if k < 1:
            raise ValueError(f"PCA needs at least 2 fit images, the fit set has {len(x)}")
        self.pca = _pca(k, len(x), whiten=True).fit(x)
        self.label = f"PCA-{k} whitened cosine"

    def represent(self, images):
        return _unit_rows(self.pca.transform(_flat(images)))

    def info(self) -> dict:
        return {"pca_components": int(self.pca.n_components_),
                "explained_variance": float(self.pca.explained_variance_ratio_.sum())}


class Fisher(Method):
    key = "fisher"

    def fit(self, fit: FitSet) -> None:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        x, y = _flat(fit.images), fit.identity
        c = len(np.unique(y))
        # PCA first keeps the within-class scatter non-singular: rank S_w <= n - c (Belhumeur 1997)
        k = min(PCA_COMPONENTS, len(x) - c, x.shape[1])
        if k < 1:
            raise ValueError(f"Fisherfaces need more fit images than identities, got {len(x)} images of {c}")
        self.pca = _pca(k, len(x), whiten=False).fit(x)
        self.lda = LinearDiscriminantAnalysis(solver="svd").fit(self.pca.transform(x), y)
        self.dims = int(self.lda.transform(self.pca.transform(x[:1])).shape[1])
        self.label = f"Fisherfaces (PCA-{k} + LDA-{self.dims})"

    def represent(self, images):
        return _unit_rows(self.lda.transform(self.pca.transform(_flat(images))))

    def info(self) -> dict:
        return {"pca_components": int(self.pca.n_components_), "lda_components": self.dims}


def make_method(key: str, progress: bool = True) -> Method:
    table = {"pixel": Pixel, "ncc": Ncc, "pca": Pca, "fisher": Fisher}
    if key == "ssim":
        return Ssim(progress)
    if key not in table:
        raise ValueError(f"baseline {key!r}: choose from {METHODS}")
    return table[key]()


def nearest_neighbour_logits(method: Method, rep: np.ndarray, fit: FitSet, fit_rep: np.ndarray) -> np.ndarray:
    """Posture logits by nearest neighbour: minus the distance to the nearest fit-set image of each posture."""
    d = np.asarray(method.distance(rep, fit_rep), np.float64)
    logits = np.full((len(rep), len(POSTURES)), -np.inf)
    for k in range(len(POSTURES)):
        if (fit.posture == k).any():
            logits[:, k] = -d[:, fit.posture == k].min(1)
    return logits


def nearest_neighbour_posture(logits: np.ndarray, posture: np.ndarray) -> dict:
    """The nearest-neighbour posture scored with `posture_metrics`."""
    pm = posture_metrics(logits, posture)
    return {"posture_accuracy": pm["posture_accuracy"],
            "posture_accuracy_per_posture": pm["posture_accuracy_per_posture"]}


def verification_baselines(data: ThzData, splits: tuple[str, ...], fit: FitSet, methods=METHODS,
                           progress: bool = True, fusion: tuple[int, ...] = (), weight: str = "roi_quality"
                           ) -> dict[str, dict]:
    """Each method's `protocol_metrics` and nearest-neighbour posture accuracy on the images of `splits`.

    `fusion` (N values): also each method's `training.fusion.fused_metrics` under key "fusion" ({N: ...}),
    fusing its own representation (`Method.fuse`) with the ROI-quality weights.
    """
    idx, _, anchors, targets = split_protocol(data, splits)
    ident, post, conc = data.identity[idx], data.posture[idx], data.concealed[idx]
    quality = None if data.quality is None else data.quality[idx]
    out = {}
    for key in methods:
        t0 = time.perf_counter()
        m = make_method(key, progress)
        m.fit(fit)
        rep, fit_rep = m.represent(data.images[idx]), m.represent(fit.images)
        logits = nearest_neighbour_logits(m, rep, fit, fit_rep)
        cohort = fit.cohort(fit_rep, m.template)
        r = {"label": m.label} | m.info() | protocol_metrics(rep, ident, post, conc, anchors, targets,
                                                             m.distance, m.template, logits.argmax(1), cohort)
        r |= nearest_neighbour_posture(logits, post)
        if fusion:
            r["fusion"] = fused_metrics(rep, ident, post, conc, data.capture[idx], quality, fusion, weight,
                                        m.distance, m.template, m.fuse, logits.argmax(1), cohort)
        r["seconds"] = time.perf_counter() - t0
        log.info("baseline done", extra={"method": key, "triplet_accuracy": round(r["triplet_accuracy"], 4),
                                         "eer": round(r["eer"], 4), "seconds": round(r["seconds"], 1)})
        out[key] = r
    return out


def reconstruction_predictions(data: ThzData, splits: tuple[str, ...], fit: FitSet, oracle_pool: np.ndarray
                               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The four reference predictors (module doc): key -> (anchor indices, target indices, predicted images).

    `oracle_pool`: the images the oracle may average (the train split when a held-back split is evaluated,
    every image when all are: then the person's other captures are their enrolment scans).
    An anchor for which a predictor has nothing to offer (no other capture, no second capture)
    is left out of that predictor's rows.
    """
    _, tri, _, _ = split_protocol(data, splits)
    unc = ~data.concealed
    fit_unc = ~fit.concealed
    preds: dict[str, list] = {k: [] for k in RECONSTRUCTIONS}
    for a, t in zip(tri.anchors, tri.target):
        i, p = data.identity[a], data.posture[a]
        cell = unc & (data.identity == i) & (data.posture == p)
        cell[t] = False
        own = np.flatnonzero(cell & oracle_pool)
        if len(own):
            preds["oracle"].append((a, t, data.images[own].mean(0)))
        pool = fit_unc & (fit.posture == p) & ((fit.identity != i) if fit.same_people else True)
        if pool.any():
            preds["posture_mean"].append((a, t, fit.images[pool].mean(0)))
        other = np.flatnonzero(cell)
        if len(other):
            gap = np.abs(data.capture[other] - data.capture[t])
            preds["second_capture"].append((a, t, data.images[other[np.lexsort((data.capture[other], gap))[0]]]))
        preds["concealed"].append((a, t, data.images[a]))
    return {k: (np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                np.stack([r[2] for r in rows]).astype(np.float32) if rows else np.zeros((0, 1, 64, 64), np.float32))
            for k, rows in preds.items()}


def identity_score(embed, data: ThzData, anchors: np.ndarray, targets: np.ndarray, images: np.ndarray,
                   references: np.ndarray | None = None) -> dict:
    """Does a reconstruction show the right person? Its embedding verified against real unconcealed scans.

    `embed` maps (n,1,64,64) images to unit embeddings (the evaluated network's); `images[k]` is the
    prediction for concealed anchor `anchors[k]`, whose own unconcealed target is `targets[k]`. The
    references are the evaluation's targets (`references`, default `targets`): scans no predictor used
    (the oracle and the second capture leave the target out, the posture mean leaves the person out).
        genuine   d(prediction k, target k): the very face it should show
        impostor  d(prediction k, t) for every reference t of another identity
    identity_accuracy: the paper's triplet form with the prediction as the anchor, fraction of (k, t),
    t an impostor reference in k's posture, with d(k, target k) < d(k, t); ROC AUC and EER over genuine
    vs every impostor pair (all postures), `training.metrics.biometrics`.
    """
    refs = np.unique(np.asarray(targets if references is None else references, np.int64))
    where = {int(r): j for j, r in enumerate(refs)}
    missing = [int(t) for t in targets if int(t) not in where]
    if missing:
        raise ValueError(f"targets {missing[:3]} are not among the identity references")
    d = cosine_distance(embed(np.asarray(images, np.float32)), embed(data.images[refs]))
    own = np.array([where[int(t)] for t in targets], np.int64)
    gen = d[np.arange(len(targets)), own]
    other = data.identity[refs][None, :] != data.identity[anchors][:, None]
    same_posture = data.posture[refs][None, :] == data.posture[anchors][:, None]
    triplet = other & same_posture
    b = biometrics(gen, d[other])
    acc = float((gen[:, None] < d)[triplet].mean()) if triplet.any() else float("nan")
    return {"identity_accuracy": acc, "identity_roc_auc": b["roc_auc"], "identity_eer": b["eer"],
            "identity_n_genuine": b["n_genuine"], "identity_n_impostor": b["n_impostor"],
            "identity_n_triplets": int(triplet.sum())}


def reconstruction_baselines(data: ThzData, splits: tuple[str, ...], fit: FitSet, oracle_pool: np.ndarray,
                             embed=None) -> dict[str, dict]:
    """SSIM / PSNR of the reference predictors on the network's reconstruction targets; `n` = anchors scored.

    With `embed` (a network's embedding), also each predictor's `identity_score` against the same
    references: every target of the split.
    """
    out = {}
    _, tri, _, _ = split_protocol(data, splits)
    for key, (a, t, pred) in reconstruction_predictions(data, splits, fit, oracle_pool).items():
        if not len(a):
            out[key] = {"n": 0}
            continue
        rm = reconstruction_metrics(pred, data.images[t], data.posture[a])
        out[key] = {"ssim": rm["ssim"], "psnr": rm["psnr"], "n": int(len(a)), "per_posture": rm["per_posture"]}
        if embed is not None:
            out[key] |= identity_score(embed, data, a, t, pred, tri.target)
    return out


def oracle_pool(data: ThzData, splits: tuple[str, ...], train_mask: np.ndarray) -> np.ndarray:
    """What the oracle averages: the train split when held-back splits are evaluated; every image when the
    train split is evaluated too (a new dataset: the person's other captures are their enrolment scans)."""
    return np.ones(len(data), bool) if "train" in splits else train_mask


def run_baselines(data: ThzData, splits: tuple[str, ...], train_mask: np.ndarray, fit_data: ThzData | None = None,
                  methods=METHODS, progress: bool = True, embed=None, fusion: tuple[int, ...] = (),
                  weight: str = "roi_quality") -> dict:
    """Every baseline on `splits` of `data`: {"fit": ..., "verification": {method: ...}, "reconstruction": ...}.

    `embed`: the evaluated network's embedding, for the identity score of each reconstruction predictor;
    `fusion`, `weight`: multi-scan fusion of each method (`verification_baselines`).
    """
    fit = fit_set(data, train_mask, np.isin(data.split, list(splits)), fit_data)
    log.info("baselines", extra={"splits": list(splits), "fit": fit.describe()})
    return {"fit": fit.describe(),
            "verification": verification_baselines(data, splits, fit, methods, progress, fusion, weight),
            "reconstruction": reconstruction_baselines(data, splits, fit, oracle_pool(data, splits, train_mask),
                                                       embed)}


# ---- the report ---------------------------------------------------------------------------------------

RECONSTRUCTION_LABELS = {
    "oracle": "oracle: mean of the person's other unconcealed captures (same posture)",
    "posture_mean": "identity-blind posture mean (unconcealed fit-set images)",
    "second_capture": "a second real unconcealed capture of the same face",
    "concealed": "the concealed input itself",
}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _rows(baselines: dict, network: dict | None, network_label: str) -> list[tuple[str, dict]]:
    return ([(f"**{network_label}**", network)] if network is not None else []) + \
        [(v["label"], v) for v in baselines["verification"].values()]


def posture_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Triplet accuracy per posture of the anchor, one row per method."""
    names = [p for p in POSTURES if any(p in m.get("triplet_accuracy_per_posture", {}) for _, m in rows)]
    if not names:
        return []
    lines = ["Triplet accuracy per posture (anchor's posture; same-posture negatives):", "",
             "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, m in rows:
        per = m.get("triplet_accuracy_per_posture", {})
        lines.append(f"| {name} | " + " | ".join(_pct(per.get(p)) for p in names) + " |")
    return lines + [""]


def snorm_table(rows: list[tuple[str, dict]]) -> list[str]:
    """The claims by the posture template, raw and S-normalised against each method's cohort (its own
    representation of the fit set's people: thzcore.score_norm.Cohort), one row per method."""
    rows = [(name, m) for name, m in rows if "enrolled_snorm_eer" in m]
    if not rows:
        return []
    lines = ["", "Claims by the posture template, raw | S-normalised against a cohort of the fit set's people "
                 "(each method's own templates of them, one per person and posture; thzcore.score_norm):", "",
             "| method | EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 | EER (S-norm) | TAR@FAR1% (S-norm) | "
             "TAR@FAR0.1% (S-norm) | rank-1 (S-norm) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_pct(m.get(f"{rule}_{k}")) for rule in ("enrolled_posture",
                     "enrolled_snorm") for k in ("eer", "tar_at_far1", "tar_at_far0p1", "rank1")) + " |")
    return lines


def fusion_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Biometrics of fused probes vs fused references (training/fusion.py), one row per method and N."""
    rows = [(name, m["fusion"]) for name, m in rows if m.get("fusion")]
    if not rows:
        return []
    first = next(iter(rows[0][1].values()))
    ns = sorted(int(n) for n in rows[0][1])
    lines = [f"Multi-scan fusion (training/fusion.py): probes = windows of N consecutive concealed ROIs of one person "
             f"and posture, references = windows of N unconcealed ROIs, each fused with the ROI-quality weights; "
             f"every N on the same cells (those with >= {max(ns)} ROIs: {first['n_cells']} cells).", "",
             "| method | N | probes / refs | AUC | EER | TAR@FAR1% | TAR@FAR0.1% | EER (same posture) | rank-1 | "
             "claims (posture template): EER | TAR@FAR1% | rank-1 | claims S-normalised: EER | TAR@FAR1% |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in rows:
        for n in sorted(f, key=int):
            m = f[n]
            lines.append(f"| {name} | {n} | {m['n_probes']} / {m['n_references']} | {_num(m['roc_auc'])} | "
                         f"{_pct(m['eer'])} | {_pct(m['tar_at_far1'])} | {_pct(m['tar_at_far0p1'])} | "
                         f"{_pct(m.get('same_posture_eer'))} | {_pct(m['rank1_identification'])} | "
                         f"{_pct(m.get('enrolled_posture_eer'))} | {_pct(m.get('enrolled_posture_tar_at_far1'))} | "
                         f"{_pct(m.get('enrolled_posture_rank1'))} | {_pct(m.get('enrolled_snorm_eer'))} | "
                         f"{_pct(m.get('enrolled_snorm_tar_at_far1'))} |")
    return lines + [""]


def tables(baselines: dict, network: dict | None = None, network_label: str = "network") -> list[str]:
    """Markdown lines: verification, biometric, per-posture, fusion and reconstruction tables, the network first."""
    rows = _rows(baselines, network, network_label)
    fit = baselines["fit"]
    lines = [f"Classical baselines (no network; PCA / LDA and posture NN fitted on the {fit['source']}: "
             f"{fit['n_images']} images, {fit['n_identities']} identities). Distances are each method's own "
             "(1 - cos, 1 - NCC, 1 - SSIM), so d(a,p) and d(a,n) compare within a row only.", "",
             "| method | triplet acc. | d(a,p) | d(a,n) | rank-1 | posture (NN) |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in rows:
        lines.append(f"| {name} | {_pct(m['triplet_accuracy'])} | {_num(m['avg_positive_distance'])} | "
                     f"{_num(m['avg_negative_distance'])} | {_pct(m['rank1_identification'])} | "
                     f"{_pct(m.get('posture_accuracy'))} |")
    lines += ["", "Biometric verification, concealed probe vs unconcealed reference: all postures | same posture only:",
              "", "| method | AUC | EER | TAR@FAR1% | TAR@FAR0.1% | AUC (same) | EER (same) | TAR@FAR1% (same) | "
              "TAR@FAR0.1% (same) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows:
        g = m.get
        lines.append(f"| {name} | {_num(g('roc_auc'))} | {_pct(g('eer'))} | {_pct(g('tar_at_far1'))} | "
                     f"{_pct(g('tar_at_far0p1'))} | {_num(g('same_posture_roc_auc'))} | "
                     f"{_pct(g('same_posture_eer'))} | "
                     f"{_pct(g('same_posture_tar_at_far1'))} | {_pct(g('same_posture_tar_at_far0p1'))} |")
    first = next(iter(rows))[1] if rows else {}
    if "n_genuine" in first:
        lines += ["", f"Pairs: all postures {first['n_genuine']} genuine / {first['n_impostor']} impostor; same "
                      f"posture {first.get('same_posture_n_genuine')} / {first.get('same_posture_n_impostor')}; "
                      f"triplets {first.get('n_triplets')}."]
    if any("enrolled_eer" in m for _, m in rows):
        lines += ["", "Claims against enrolled people (each concealed probe claims each person enrolled from the "
                      "unconcealed images): scored by the nearest of the person's references | by the person's template "
                      "in the probe's predicted posture (the network's posture head; a baseline's nearest-neighbour "
                      "posture):", "",
                  "| method | AUC | EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 | AUC (posture) | EER (posture) | "
                  "TAR@FAR1% (posture) | TAR@FAR0.1% (posture) | rank-1 (posture) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m in rows:
            g = m.get
            lines.append(f"| {name} | {_num(g('enrolled_roc_auc'))} | {_pct(g('enrolled_eer'))} | "
                         f"{_pct(g('enrolled_tar_at_far1'))} | {_pct(g('enrolled_tar_at_far0p1'))} | "
                         f"{_pct(g('enrolled_rank1'))} | {_num(g('enrolled_posture_roc_auc'))} | "
                         f"{_pct(g('enrolled_posture_eer'))} | {_pct(g('enrolled_posture_tar_at_far1'))} | "
                         f"{_pct(g('enrolled_posture_tar_at_far0p1'))} | {_pct(g('enrolled_posture_rank1'))} |")
        if "enrolled_n_genuine" in first:
            lines += ["", f"Claims: {first['enrolled_n_genuine']} genuine / {first['enrolled_n_impostor']} impostor."]
        lines += snorm_table(rows)
    lines += [""] + posture_table(rows) + fusion_table(rows)
    rec = baselines["reconstruction"]
    ident = any("identity_accuracy" in r for r in rec.values())
    lines += ["Reconstruction against the same targets (each concealed anchor's paired unconcealed capture)"
              + (f"; identity = the predicted image embedded by {network_label} and verified against the anchor's own "
                 "target (genuine) and the other people's targets (impostors): accuracy = d(prediction, own target) < "
                 "d(prediction, another person's target in that posture), AUC / EER over all postures:"
                 if ident else ":"), "",
              "| predictor | SSIM | PSNR (dB) | anchors |" + (" identity acc. | identity AUC | identity EER |"
                                                             if ident else ""),
              "|---|---:|---:|---:|" + ("---:|---:|---:|" if ident else "")]

    def cols(r: dict) -> str:
        return (f" {_pct(r.get('identity_accuracy'))} | {_num(r.get('identity_roc_auc'))} | "
                f"{_pct(r.get('identity_eer'))} |") if ident else ""
    if network is not None and "ssim" in network:
        lines.append(f"| **{network_label}** (predicted-posture routing) | {network['ssim']:.4f} | "
                     f"{network['psnr']:.2f} | {network['n_anchors']} |"
                     + cols(network.get("reconstruction_identity", {})))
    for key, r in rec.items():
        lines.append(f"| {RECONSTRUCTION_LABELS[key]} | {_num(r.get('ssim'))} | {_num(r.get('psnr'), 2)} | {r['n']} |"
                     + cols(r))
    return lines + [""]


def baselines_report(data: ThzData, split: str, n_images: int, n_anchors: int, baselines: dict,
                     identities: list[int] | None) -> str:
    """`thz baselines`' report.md: the dataset, the protocol, the tables."""
    return "\n".join([f"# Classical baselines on `{data.root}`, split `{split}`", "",
                      f"- {n_images} THz images, {n_anchors} concealed anchors"
                      + (f", identities {','.join(map(str, identities))} only" if identities else ""),
                      "- protocols of `thz evaluate` (docs/training.md, 'Classical baselines')", ""]
                     + tables(baselines))


def summary(baselines: dict) -> dict:
    """The headline numbers per method (for the JSON line of the CLI)."""
    keys = ("triplet_accuracy", "roc_auc", "eer", "tar_at_far1", "tar_at_far0p1", "same_posture_eer",
            "rank1_identification", "posture_accuracy", "seconds", "enrolled_eer", "enrolled_tar_at_far1",
            "enrolled_rank1", "enrolled_posture_eer", "enrolled_posture_tar_at_far1", "enrolled_posture_rank1",
            "enrolled_snorm_eer", "enrolled_snorm_tar_at_far1", "enrolled_snorm_rank1")
    verification = {k: {x: v[x] for x in keys if x in v} for k, v in baselines["verification"].items()}
    for k, v in baselines["verification"].items():
        if v.get("fusion"):
            verification[k]["fusion"] = fusion_summary(v["fusion"])
    return {"fit": baselines["fit"], "verification": verification,
            "reconstruction": {k: {x: v[x] for x in ("ssim", "psnr", "n", "identity_accuracy", "identity_eer") if x in v}
                               for k, v in baselines["reconstruction"].items()}}


def fusion_summary(fusion: dict) -> dict:
    """{N: the headline biometrics} of `training.fusion.fused_metrics` (for JSON lines)."""
    keys = ("roc_auc", "eer", "tar_at_far1", "tar_at_far0p1", "rank1_identification", "n_probes", "n_references",
            "enrolled_posture_eer", "enrolled_posture_tar_at_far1", "enrolled_posture_rank1", "enrolled_snorm_eer",
            "enrolled_snorm_tar_at_far1", "enrolled_snorm_rank1")
    return {int(n): {k: m[k] for k in keys if k in m} for n, m in fusion.items()}


def evaluate_baselines(data_dir: str | Path, split: str = "test", out: str | Path | None = None,
                       identities: list[int] | None = None, fit_dir: str | Path | None = None,
                       progress: bool = True, reports_root: str | Path | None = None) -> tuple[dict, str]:
    """`thz baselines`: every baseline on a split of a dataset, no network. Returns (metrics, report text).

    Without `out` the report goes to `reports_root` (default: `evaluations/` of the data directory)."""
    import json
    data = ThzData.load(data_dir)
    train_mask = data.split == "train"
    if identities is not None:
        data.keep_identities(identities)
    splits = ("train", "val", "test") if split == "all" else (split,)
    fit_data = ThzData.load(fit_dir) if fit_dir is not None else None
    b = run_baselines(data, splits, train_mask, fit_data, progress=progress)
    idx, tri, _, _ = split_protocol(data, splits)
    text = baselines_report(data, split, len(idx), len(tri), b, sorted(identities) if identities else None)
    if out is None:
        from thzcore.datadirs import EVALUATIONS, resolve
        out = resolve(reports_root, EVALUATIONS) / f"baselines_{manifest_hash(data.root)}_{split}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    public = {"split": split, "n_images": int(len(idx)), "n_anchors": int(len(tri)), "dataset": str(data.root),
              "identities": sorted(identities) if identities else None, "baselines": b}
    (out / "metrics.json").write_text(json.dumps(public, indent=2, default=float))
    return public | {"report": str(out / "report.md")}, text

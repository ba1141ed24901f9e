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

    oracle         the mean of the person's OTHER unconcealed train-split captures in that posture
    posture_mean   identity-blind: the mean unconcealed fit-set image of that posture, of the other
                   people only when the fit set holds the evaluated people (`same_people`)
    second_capture another real unconcealed capture of the same person and posture (the nearest
                   capture index to the target's, any split): how alike two real scans of one face are
    concealed      the concealed input itself

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
from training.metrics import (cosine_distance, posture_metrics, protocol_metrics, rank1_identification,
                              reconstruction_metrics, unit_mean, verification_metrics)
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


def nearest_neighbour_posture(method: Method, rep: np.ndarray, posture: np.ndarray, fit: FitSet,
                              fit_rep: np.ndarray) -> dict:
    """Posture of the nearest fit-set image, scored with `posture_metrics` (logits = -distance to each class)."""
    d = np.asarray(method.distance(rep, fit_rep), np.float64)
    logits = np.full((len(rep), len(POSTURES)), -np.inf)
    for k in range(len(POSTURES)):
        if (fit.posture == k).any():
            logits[:, k] = -d[:, fit.posture == k].min(1)
    pm = posture_metrics(logits, posture)
    return {"posture_accuracy": pm["posture_accuracy"],
            "posture_accuracy_per_posture": pm["posture_accuracy_per_posture"]}


def verification_baselines(data: ThzData, splits: tuple[str, ...], fit: FitSet, methods=METHODS,
                           progress: bool = True) -> dict[str, dict]:
    """Each method's `protocol_metrics` and nearest-neighbour posture accuracy on the images of `splits`."""
    idx, _, anchors, targets = split_protocol(data, splits)
    ident, post, conc = data.identity[idx], data.posture[idx], data.concealed[idx]
    out = {}
    for key in methods:
        t0 = time.perf_counter()
        m = make_method(key, progress)
        m.fit(fit)
        rep, fit_rep = m.represent(data.images[idx]), m.represent(fit.images)
        r = {"label": m.label} | m.info() | protocol_metrics(rep, ident, post, conc, anchors, targets,
                                                             m.distance, m.template)
        r |= nearest_neighbour_posture(m, rep, post, fit, fit_rep)
        r["seconds"] = time.perf_counter() - t0
        log.info("baseline done", extra={"method": key, "triplet_accuracy": round(r["triplet_accuracy"], 4),
                                         "eer": round(r["eer"], 4), "seconds": round(r["seconds"], 1)})
        out[key] = r
    return out


def reconstruction_predictions(data: ThzData, splits: tuple[str, ...], fit: FitSet, train_mask: np.ndarray
                               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The four reference predictors (module doc): key -> (anchor indices, target indices, predicted images).

    An anchor for which a predictor has nothing to offer (no other train capture, no second capture)
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
        own = np.flatnonzero(cell & train_mask)
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


def identity_score(embed, data: ThzData, splits: tuple[str, ...], anchors: np.ndarray, images: np.ndarray) -> dict:
    """Does a reconstruction show the right person? Its embedding verified against the split's references.

    `embed` maps (n,1,64,64) images to unit embeddings (the evaluated network's). Each reconstruction
    of anchor a is a probe of a's identity against the split's unconcealed captures:
    rank-1 against the per-identity templates and all-posture ROC AUC / EER (`training.metrics`).
    """
    idx = data.select(splits)
    refs = idx[~data.concealed[idx]]
    emb = np.concatenate([embed(images), embed(data.images[refs])])
    ident = np.concatenate([data.identity[anchors], data.identity[refs]])
    probes, rr = np.arange(len(anchors)), np.arange(len(anchors), len(emb))
    v = verification_metrics(emb, ident, probes, rr)
    return {"identity_rank1": rank1_identification(emb, ident, probes, rr), "identity_roc_auc": v["roc_auc"],
            "identity_eer": v["eer"]}


def reconstruction_baselines(data: ThzData, splits: tuple[str, ...], fit: FitSet, train_mask: np.ndarray,
                             embed=None) -> dict[str, dict]:
    """SSIM / PSNR of the reference predictors on the network's reconstruction targets; `n` = anchors scored.

    With `embed` (a network's embedding), also each predictor's `identity_score`.
    """
    out = {}
    for key, (a, t, pred) in reconstruction_predictions(data, splits, fit, train_mask).items():
        if not len(a):
            out[key] = {"n": 0}
            continue
        rm = reconstruction_metrics(pred, data.images[t], data.posture[a])
        out[key] = {"ssim": rm["ssim"], "psnr": rm["psnr"], "n": int(len(a)), "per_posture": rm["per_posture"]}
        if embed is not None:
            out[key] |= identity_score(embed, data, splits, a, pred)
    return out


def run_baselines(data: ThzData, splits: tuple[str, ...], train_mask: np.ndarray, fit_data: ThzData | None = None,
                  methods=METHODS, progress: bool = True, embed=None) -> dict:
    """Every baseline on `splits` of `data`: {"fit": ..., "verification": {method: ...}, "reconstruction": ...}.

    `embed`: the evaluated network's embedding, for the identity score of each reconstruction predictor.
    """
    fit = fit_set(data, train_mask, np.isin(data.split, list(splits)), fit_data)
    log.info("baselines", extra={"splits": list(splits), "fit": fit.describe()})
    return {"fit": fit.describe(), "verification": verification_baselines(data, splits, fit, methods, progress),
            "reconstruction": reconstruction_baselines(data, splits, fit, train_mask, embed)}


# ---- the report ---------------------------------------------------------------------------------------

RECONSTRUCTION_LABELS = {
    "oracle": "oracle: mean of the person's other unconcealed train captures (same posture)",
    "posture_mean": "identity-blind posture mean (unconcealed fit-set images)",
    "second_capture": "a second real unconcealed capture of the same face",
    "concealed": "the concealed input itself",
}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def tables(baselines: dict, network: dict | None = None, network_label: str = "network") -> list[str]:
    """Markdown lines: verification, biometric and reconstruction tables, the network's row first."""
    rows = ([(f"**{network_label}**", network)] if network is not None else []) + \
        [(v["label"], v) for v in baselines["verification"].values()]
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
    rec = baselines["reconstruction"]
    ident = any("identity_rank1" in r for r in rec.values())
    lines += ["", "Reconstruction against the same targets (each concealed anchor's paired unconcealed capture)"
              + (f"; identity = the predicted image embedded by {network_label} and identified among the split's "
                 "unconcealed references (rank-1 against the templates, all-posture ROC AUC):" if ident else ":"), "",
              "| predictor | SSIM | PSNR (dB) | anchors |" + (" identity rank-1 | identity AUC |" if ident else ""),
              "|---|---:|---:|---:|" + ("---:|---:|" if ident else "")]

    def cols(r: dict) -> str:
        return f" {_pct(r.get('identity_rank1'))} | {_num(r.get('identity_roc_auc'))} |" if ident else ""
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
    keys = ("triplet_accuracy", "roc_auc", "eer", "tar_at_far1", "same_posture_eer", "rank1_identification",
            "posture_accuracy", "seconds")
    return {"fit": baselines["fit"],
            "verification": {k: {x: v[x] for x in keys} for k, v in baselines["verification"].items()},
            "reconstruction": {k: {x: v[x] for x in ("ssim", "psnr", "n") if x in v}
                               for k, v in baselines["reconstruction"].items()}}


def evaluate_baselines(data_dir: str | Path, split: str = "test", out: str | Path | None = None,
                       identities: list[int] | None = None, fit_dir: str | Path | None = None,
                       progress: bool = True) -> tuple[dict, str]:
    """`thz baselines`: every baseline on a split of a dataset, no network. Returns (metrics, report text)."""
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
    out = Path(out) if out is not None else Path("runs") / f"baselines_{manifest_hash(data.root)}_{split}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    public = {"split": split, "n_images": int(len(idx)), "n_anchors": int(len(tri)), "dataset": str(data.root),
              "identities": sorted(identities) if identities else None, "baselines": b}
    (out / "metrics.json").write_text(json.dumps(public, indent=2, default=float))
    return public | {"report": str(out / "report.md")}, text

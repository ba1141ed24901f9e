"""`thz evaluate`: every metric on a split, a Markdown report, a reconstruction panel and an embedding plot.

Metric definitions live in `training.metrics` (one each); this module runs a predictor (torch run or
ONNX bundle), formats the paper's Tables 1-3 plus the biometric numbers, and draws the figures.
The reconstruction panel shows, per row, the concealed input, Model A's and Model B's reconstructions
(whichever of the evaluated and `--other` sources are given) and the unconcealed ground truth.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from thzcore.labels import POSTURES
from thzcore.logs import get_logger
from training.data import ThzData
from training.predict import evaluate_split, headline, predictor_for
from training.protocols import PROTOCOL_TITLES

log = get_logger(__name__)

PAPER = {  # Bergman et al. 2026 on their private data: Model A, Model B
    "triplet_accuracy": (0.9608, 0.9412), "avg_positive_distance": (0.0540, 0.1028),
    "avg_negative_distance": (0.7459, 0.7891), "posture_accuracy": (1.0, 1.0),
    "avg_correct_confidence": (0.8604, 0.8866), "ssim": (0.4833, 0.4790), "psnr": (24.26, 24.18),
    "weakest_posture_ssim": (0.4441, 0.4429),
}


def _label(desc: dict) -> str:
    name = f"Model {desc['kind'].upper()}" + (" student" if desc["kind"] == "b" else "")
    return name + (" (ONNX)" if desc["source"] == "bundle" else "")


def reconstruction_panel(path: Path, data: ThzData, m: dict, desc: dict, other: tuple[dict, dict] | None,
                         per_posture: int = 2) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    o = m["_outputs"]
    anchors, targets = o["anchors"], o["targets"]
    rows = []
    for k in range(len(POSTURES)):
        rows += [j for j in range(len(anchors)) if data.posture[anchors[j]] == k][:per_posture]
    cols = [("concealed input", lambda j: data.images[anchors[j], 0])]
    sources = [(desc, o["reconstructions"]["predicted"])]
    if other is not None:
        sources.append((other[1], other[0]["_outputs"]["reconstructions"]["predicted"]))
    sources.sort(key=lambda s: s[0]["kind"])  # Model A left of Model B
    for d, rec in sources:
        cols.append((_label(d), lambda j, rec=rec: rec[j, 0]))
    cols.append(("ground truth (unconcealed)", lambda j: data.images[targets[j], 0]))
    fig, ax = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 1.9 * len(rows)), squeeze=False)
    for r, j in enumerate(rows):
        for c, (title, get) in enumerate(cols):
            ax[r, c].imshow(get(j), cmap="gray", vmin=0, vmax=1)
            ax[r, c].set_xticks([])
            ax[r, c].set_yticks([])
            if r == 0:
                ax[r, c].set_title(title, fontsize=8)
            if c == 0:
                a = anchors[j]
                ax[r, c].set_ylabel(f"id {data.identity[a]}\n{POSTURES[data.posture[a]]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def embedding_plot(path: Path, data: ThzData, m: dict, desc: dict) -> None:
    """PCA to 2-D of the split's embeddings: colour = identity, filled = unconcealed, hollow = concealed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    o = m["_outputs"]
    e = o["embedding"] - o["embedding"].mean(0)
    _, _, vt = np.linalg.svd(e, full_matrices=False)
    xy = e @ vt[:2].T
    ident, conc = data.identity[o["idx"]], data.concealed[o["idx"]]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(6, 5))
    for i in np.unique(ident):
        for c, face in ((False, None), (True, "none")):
            s = (ident == i) & (conc == c)
            col = cmap(int(i) % 20)
            ax.scatter(xy[s, 0], xy[s, 1], s=18, edgecolors=col, facecolors=col if face is None else "none",
                       label=f"id {i}" if not c else None)
    ax.set_title(f"{_label(desc)}: embeddings (PCA), filled = unconcealed, hollow = concealed", fontsize=9)
    if len(np.unique(ident)) <= 20:
        ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _f(v: float, pct: bool = False) -> str:
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def _ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


def markdown_report(m: dict, desc: dict, data: ThzData, other: tuple[dict, dict] | None) -> str:
    kind = desc["kind"]
    col = 0 if kind == "a" else 1
    lines = [f"# Evaluation of {_label(desc)} ({desc['preset']})", "",
             f"- source: {desc['source']} `{desc['path']}`" + (f", model id `{desc['model_id']}`"
                                                               if "model_id" in desc else ""),
             f"- dataset: `{data.root}`, split `{m['split']}`: {m['n_images']} THz images, "
             f"{m['n_anchors']} concealed anchors"
             + (f", identities {_ranges(m['identities'])} only" if "identities" in m else "")
             + (" (identity-disjoint: identities never seen in training)" if m["split"] == "heldout" else
                " (capture-disjoint: identities seen in training, other captures)"
                if m["split"] in ("test", "val", "train") else ""),
             "- distance: cosine, d = 1 - a.b on L2-normalised embeddings; triplets use every same-posture "
             "negative of another identity; SSIM 11x11 Gaussian sigma 1.5 (the training loss's own).",
             "- decoder routing: predicted posture (what runs live); other routings below.", *_protocol_lines(m),
             f"| metric | this project | paper Model {kind.upper()} |", "|---|---:|---:|"]
    for k, pct in (("triplet_accuracy", True), ("avg_positive_distance", False), ("avg_negative_distance", False),
                   ("posture_accuracy", True), ("avg_correct_confidence", False), ("ssim", False),
                   ("psnr", False), ("weakest_posture_ssim", False)):
        paper = PAPER[k][col]
        lines.append(f"| {k} | {_f(m[k], pct)} | {_f(paper, pct)} |")
    lines += ["", f"Weakest posture: **{m['weakest_posture']}**.", "",
              "| posture | SSIM | PSNR (dB) | n | posture accuracy | triplet accuracy |",
              "|---|---:|---:|---:|---:|---:|"]
    for p, v in m["per_posture"].items():
        lines.append(f"| {p} | {v['ssim']:.4f} | {v['psnr']:.2f} | {v['n']} | "
                     f"{100 * m['posture_accuracy_per_posture'].get(p, float('nan')):.1f}% | "
                     f"{100 * m.get('triplet_accuracy_per_posture', {}).get(p, float('nan')):.2f}% |")
    lines += ["", "| routing | SSIM | PSNR (dB) |", "|---|---:|---:|",
              f"| predicted posture | {m['ssim']:.4f} | {m['psnr']:.2f} |"]
    for r in ("gt", "soft"):
        if f"ssim_{r}_routing" in m:
            lines.append(f"| {'ground truth' if r == 'gt' else 'soft (probability blend)'} | "
                         f"{m[f'ssim_{r}_routing']:.4f} | {m[f'psnr_{r}_routing']:.2f} |")
    if "reconstruction_identity" in m:
        ri = m["reconstruction_identity"]
        lines += ["", f"Identity of the reconstruction (each reconstructed face embedded by the network and verified "
                      f"against its own unconcealed target, genuine, and the other people's targets, impostors): "
                      f"accuracy {100 * ri['identity_accuracy']:.2f}% (d to the own target below d to another person's "
                      f"target in the posture), ROC AUC {ri['identity_roc_auc']:.4f}, EER "
                      f"{100 * ri['identity_eer']:.2f}% ({ri['identity_n_genuine']} genuine / "
                      f"{ri['identity_n_impostor']} impostor pairs)."]
    lines += ["", "Biometric verification (concealed probe vs unconcealed reference):", "",
              "| pairs | ROC AUC | EER | TAR @ FAR 1% | TAR @ FAR 0.1% | rank-1 identification | genuine / impostor |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, p, rank1 in (("all postures", "", f"{100 * m['rank1_identification']:.2f}%"),
                           ("same posture", "same_posture_", "-"),
                           ("claims vs enrolled people, nearest reference", "enrolled_",
                            f"{100 * m.get('enrolled_rank1', float('nan')):.2f}%"),
                           ("claims vs enrolled people, template of the predicted posture", "enrolled_posture_",
                            f"{100 * m.get('enrolled_posture_rank1', float('nan')):.2f}%"),
                           ("claims, posture template S-normalised against a cohort", "enrolled_snorm_",
                            f"{100 * m.get('enrolled_snorm_rank1', float('nan')):.2f}%")):
        if f"{p}eer" in m:
            lines.append(f"| {name} | {m[f'{p}roc_auc']:.4f} | {100 * m[f'{p}eer']:.2f}% | "
                         f"{100 * m[f'{p}tar_at_far1']:.2f}% | {100 * m[f'{p}tar_at_far0p1']:.2f}% | "
                         f"{rank1} | {m[f'{p}n_genuine']} / {m[f'{p}n_impostor']} |")
    if "enrolled_eer" in m:
        lines += ["", "(Pairs: each concealed probe against each unconcealed image. Claims: each probe claims each "
                      "person enrolled from those images, scored against the nearest of them (as `thz verify` "
                      "decides today) or against the person's mean template in the posture the network's "
                      "posture head gives the probe; `training.metrics.enrolled_metrics`."
                  + (f" S-normalised: that distance against a cohort of {m['score_norm']['templates']} templates of "
                     f"{m['score_norm']['identities']} other people ({m['score_norm']['cohort']}), "
                     f"thzcore.score_norm." if (m.get("score_norm") or {}).get("cohort") else "") + ")"]
    lines.append("")
    lines += _fusion_lines(m, _label(desc))
    if "baselines" in m:
        from training.baselines import tables
        lines += ["## Classical baselines beside the network", ""] + tables(m["baselines"], m, _label(desc))
    if other is not None:
        om, od = other
        lines += [f"Compared with {_label(od)} (`{od['path']}`): triplet accuracy {100 * om['triplet_accuracy']:.2f}%,"
                  f" posture accuracy {100 * om['posture_accuracy']:.2f}%, SSIM {om['ssim']:.4f}, "
                  f"PSNR {om['psnr']:.2f} dB, EER {100 * om['eer']:.2f}%.", ""]
    lines += ["![reconstructions](reconstructions.png)", "", "![embeddings](embeddings.png)", ""]
    return "\n".join(lines)


def _protocol_lines(m: dict) -> list[str]:
    """The report's protocol section: which protocol, and the seeds it was checked against."""
    pr = m.get("protocol") or {}
    if not pr.get("protocol"):
        return ["- protocol: not checked (`--split`" + ("; the dataset or model records no seeds" if pr else "")
                + "); `--protocol paper|heldout|openset` checks it", ""]
    lines = [f"- protocol **{pr['protocol']}**: {pr['title']}"
             + (" (named from the seeds; `--split` given)" if pr.get("inferred") else "")]
    if "evaluated" in pr:
        ev, tr = pr["evaluated"], pr["training"]
        lines.append(f"- evaluated data: capture seed {ev['seed']}, population seed {ev['population_seed']}, "
                     f"{ev['n_identities']} identities; the model's training data (`{tr['path']}`): capture seed "
                     f"{tr['seed']}, population seed {tr['population_seed']}, {tr['n_identities']} identities")
    lines += [f"- note: {n}" for n in pr.get("notes", [])]
    return lines + [""]


def _fusion_lines(m: dict, label: str) -> list[str]:
    if "fusion" not in m or "baselines" in m:   # with baselines the fusion table is among theirs
        return []
    from training.baselines import fusion_table
    return fusion_table([(f"**{label}**", m)])


def _resolve_protocol(protocol: str | None, split: str, data: ThzData, desc: dict, pred, source,
                      identities: list[int] | None, baselines: bool, fit_dir) -> tuple[str, list[int] | None, dict]:
    """(split to evaluate, identities, the protocol facts for the report); ProtocolError when it does not fit."""
    from training.protocols import check_fit_data, infer_protocol, resolve, training_provenance
    training = training_provenance(desc["source"], desc["path"], getattr(pred, "manifest", None))
    if protocol is None:
        name = infer_protocol(split, data.root, training) if identities is None else None
        return split, identities, ({"protocol": name, "title": PROTOCOL_TITLES[name], "inferred": True}
                                   if name else {"protocol": None})
    plan = resolve(protocol, data.root, data.identity, training, desc["heldout_identities"], str(source))
    if identities is not None and plan.identities is not None:
        outside = sorted(set(identities) - set(plan.identities))
        if outside:
            from training.protocols import ProtocolError
            raise ProtocolError(f"--protocol {protocol} --identities: {outside} are not identities the model trained on")
    if baselines or fit_dir is not None:   # --fit-data alone: the network's S-normalisation cohort
        plan.notes += check_fit_data(plan, fit_dir)
    ids = identities if identities is not None else plan.identities
    return ("test" if protocol == "paper" else "all"), ids, plan.to_json()


def _network_cohort(data: ThzData, splits: tuple[str, ...], train_mask: np.ndarray, fit_data: ThzData | None,
                    embed, m: dict):
    """The score-normalisation cohort of the network (thzcore.score_norm.Cohort): its templates of the baselines'
    fit set (the train split of the model's training data, or of `--fit-data`, minus the evaluated images), so
    network and baselines are normalised against the same people. None, with the reason in `m`, when there
    is no such set."""
    from training.baselines import fit_set
    try:
        fit = fit_set(data, train_mask, np.isin(data.split, list(splits)), fit_data)
    except ValueError as e:
        m["score_norm"] = {"cohort": None, "reason": str(e)}
        log.info("claims not S-normalised: no cohort", extra={"reason": str(e)})
        return None
    cohort = fit.cohort(embed(fit.images))
    m["score_norm"] = {"cohort": fit.source, "templates": int(len(cohort.templates)),
                       "identities": int(len(np.unique(cohort.identity))), "top_k": cohort.top_k,
                       "overlap": cohort.overlap}
    return cohort


def _evaluations_root(given: str | Path | None) -> Path:
    """Where a bundle's evaluation goes without --out: `given`, else `evaluations/` of the data directory."""
    from thzcore.datadirs import EVALUATIONS, resolve
    return resolve(given, EVALUATIONS)


def evaluate(source: str | Path, data_dir: str | Path, split: str = "test", out: str | Path | None = None,
             other: str | Path | None = None, threads: int = 2, identities: list[int] | None = None,
             baselines: bool = False, fit_dir: str | Path | None = None, progress: bool = True,
             protocol: str | None = None, fusion: tuple[int, ...] = (), weight: str = "roi_quality",
             reports_root: str | Path | None = None) -> dict:
    """Evaluate a run or bundle on `split` or under `protocol`; write the report; return the metrics.

    test | val | train: the dataset's capture-disjoint splits (of the identities the model trained on);
    heldout: every capture of the identities the run kept out of training (identity-disjoint protocol);
    all: every image.
    `protocol` (training/protocols.py): paper | heldout | openset, checked against the seeds of the
    dataset and of the model's training data (ProtocolError when they do not fit); it sets the split.
    `identities` restricts any of these to those identities (e.g. a set no compared model trained on).
    `baselines`: also the classical baselines (training/baselines.py) on the same images and protocols,
    fitted on the train split of the data the model trained on minus the evaluated images, or on the
    train split of `fit_dir`.
    `fusion`: N values for multi-scan fusion (training/fusion.py), fused with `weight`.
    """
    pred, desc = predictor_for(source, threads)
    data = ThzData.load(data_dir)
    split, identities, proto = _resolve_protocol(protocol, split, data, desc, pred, source, identities, baselines,
                                                 fit_dir)
    held = data.hold_out(0, desc["heldout_identities"]) if split != "all" else []
    if split == "heldout" and not held:
        raise ValueError(f"{source} held no identity out of training (training.holdout_identities = 0): "
                         "there is no identity-disjoint split to evaluate")
    train_mask = data.split == "train"   # what the run trained on, before any --identities restriction
    if identities is not None:
        data.keep_identities(identities)
    splits = ("train", "val", "test") if split == "all" else (split,)
    m = evaluate_split(pred, data, splits, keep_outputs=True)
    m["protocol"] = proto
    from training.baselines import identity_score
    embed = lambda x: pred(x, reconstruct=False)["embedding"]  # noqa: E731
    o = m["_outputs"]
    m["reconstruction_identity"] = identity_score(embed, data, o["anchors"], o["targets"],
                                                  o["reconstructions"]["predicted"])
    fit_data = ThzData.load(fit_dir) if fit_dir else None
    idx, predicted = o["idx"], np.asarray(o["posture_logits"]).argmax(1)
    cohort = _network_cohort(data, splits, train_mask, fit_data, embed, m)
    if cohort is not None:
        from training.metrics import enrolled_metrics
        conc = data.concealed[idx]
        m |= {k: v for k, v in enrolled_metrics(o["embedding"], data.identity[idx], data.posture[idx],
                                                np.flatnonzero(conc), np.flatnonzero(~conc), predicted,
                                                cohort=cohort).items() if k.startswith("enrolled_snorm_")}
    if fusion:
        from training.fusion import fused_metrics
        m["fusion"] = fused_metrics(o["embedding"], data.identity[idx], data.posture[idx], data.concealed[idx],
                                    data.capture[idx], None if data.quality is None else data.quality[idx], fusion,
                                    weight, predicted_posture=predicted, cohort=cohort)
        m["fusion_weight"] = weight
    if baselines:
        from training.baselines import run_baselines
        m["baselines"] = run_baselines(data, splits, train_mask, fit_data,
                                       progress=progress, embed=embed, fusion=fusion, weight=weight)
    if identities is not None:
        m["identities"] = sorted(identities)
    oth = None
    if other is not None:
        opred, odesc = predictor_for(other, threads)
        oth = (evaluate_split(opred, data, splits, routes=("predicted",), keep_outputs=True), odesc)
    if out is None:
        src = Path(source)
        tag = protocol or split
        out = (src / f"eval_{tag}") if desc["source"] == "run" else _evaluations_root(reports_root) / f"eval_{desc['model_id']}_{tag}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reconstruction_panel(out / "reconstructions.png", data, m, desc, oth)
    embedding_plot(out / "embeddings.png", data, m, desc)
    (out / "report.md").write_text(markdown_report(m, desc, data, oth))
    public = {k: v for k, v in m.items() if not k.startswith("_")}
    (out / "metrics.json").write_text(json.dumps(public | {"model": desc}, indent=2, default=float))
    log.info("evaluation written", extra={"report": str(out / "report.md")})
    result = headline(m) | {"model": desc["kind"], "source": desc["source"], "report": str(out / "report.md"),
                            "protocol": proto.get("protocol")}
    from training.baselines import fusion_summary, summary
    if fusion:
        result["fusion"] = fusion_summary(m["fusion"])
    if baselines:
        result["baselines"] = summary(m["baselines"])
    return result

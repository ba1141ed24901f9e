"""Export a run's THz network (Model A, or Model B's student) as a model bundle: ONNX + manifest.

Graph: input `thz` float32 (B,1,64,64) in [0,1]; outputs `embedding` (B,E) L2-normalised,
`posture_logits` (B,5), `reconstruction` (B,1,64,64) with the decoder routed by the predicted posture
inside the graph (every expert runs, the argmax one-hot selects: one static graph that holds every
expert; the inference engines cut it into a trunk and one graph per expert and run only the routed
one, inference.engines.routing, so the bundle format and its model id stay as they are). torch.onnx.export with the dynamo
exporter at opset 20 and an example batch of 2, so the batch dimension stays dynamic.
Verification threshold: calibrated on the dataset's `val` split with the exported model's own
embeddings: the EER point (default) or the largest threshold with FAR <= target (config); likewise the
posture-template threshold and, on the distance S-normalised against the bundle's cohort (`cohort.npz`: the
training identities' train split, one template per person and posture; thzcore.score_norm), its threshold.
Parity: ONNX Runtime vs torch on val images (and a batch of 1); the export fails when any output
differs by more than `training.export_tolerance` (absolute).
Metadata: the ONNX file carries metadata_props (thzcore.bundle.onnx_metadata: model_id, threshold, distance,
postures, input size, normalisation, preset); the model id is the graph's hash with them cleared
(thzcore.bundle.graph_model_id), so stamping them does not change it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from thzcore.bundle import (ONNX_NAME, BundleManifest, ScoreNorm, graph_model_id, read_manifest, stamp_metadata,
                            write_manifest)
from thzcore.labels import POSTURES
from thzcore.logs import get_logger
from thzcore.provenance import source_commit
from training.config import TrainingConfig
from training.data import ThzData
from training.metrics import Cohort, claim_distances, eer, normalised_claims, pair_distances, threshold_at_far
from training.model import ExportWrapper, MultiTaskNet
from training.predict import RUN_CONFIG, OnnxPredictor, TorchPredictor, evaluate_split, headline, load_run

log = get_logger(__name__)
OPSET = 20


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree by more than the tolerance."""


def export_onnx(net: MultiTaskNet, path: Path) -> None:
    net.eval()
    wrapper = ExportWrapper(net).eval()
    example = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    prog = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=OPSET, input_names=["thz"],
                             output_names=["embedding", "posture_logits", "reconstruction"],
                             dynamic_shapes={"thz": {0: batch}}, external_data=False, verbose=False)
    prog.save(str(path))


def parity(net: MultiTaskNet, bundle: Path, images: np.ndarray, tol: float) -> dict[str, float]:
    """max |ORT - torch| per output over `images` and over a batch of 1; raise ParityError above tol."""
    ort_pred, torch_pred = OnnxPredictor(bundle, threads=1), TorchPredictor(net)
    worst: dict[str, float] = {}
    for x in (images, images[:1]):
        a, b = ort_pred(x), torch_pred(x)
        for k in ("embedding", "posture_logits", "reconstruction"):
            worst[k] = max(worst.get(k, 0.0), float(np.abs(a[k] - b[k]).max()))
    bad = {k: v for k, v in worst.items() if v > tol}
    if bad:
        raise ParityError(f"ONNX Runtime differs from torch by {bad} > tolerance {tol}; the bundle was not written")
    return worst


def _operating_point(gen: np.ndarray, imp: np.ndarray, rule: str, target_far: float
                     ) -> tuple[float, float, float, float, float]:
    """(the threshold `rule` picks: "eer" its EER point, else the largest with FAR <= target_far; EER; EER
    threshold; TAR at target_far; that threshold) of genuine and impostor distances."""
    e, t_eer = eer(gen, imp)
    tar, t_far = threshold_at_far(gen, imp, target_far)
    return (t_eer if rule == "eer" else t_far), e, t_eer, tar, t_far


def calibrate_threshold(emb: np.ndarray, identity: np.ndarray, concealed: np.ndarray, rule: str,
                        target_far: float) -> tuple[float, str, dict]:
    """Threshold on cosine distance from (concealed probe, unconcealed reference) pairs of one split."""
    probes, refs = np.flatnonzero(concealed), np.flatnonzero(~concealed)
    gen, imp = pair_distances(emb, identity, probes, refs)
    thr, e, t_eer, tar, t_far = _operating_point(gen, imp, rule, target_far)
    facts = {"val_eer": e, "val_eer_threshold": t_eer, "val_tar_at_target_far": tar, "target_far": target_far,
             "val_genuine_pairs": int(len(gen)), "val_impostor_pairs": int(len(imp))}
    if rule == "eer":
        return thr, (f"EER point on the val split ({len(gen)} genuine / {len(imp)} impostor concealed-vs-"
                     f"unconcealed pairs, cosine distance); val EER {e:.4f}"), facts
    return thr, (f"largest threshold with FAR <= {target_far} on the val split ({len(imp)} impostor pairs); "
                 f"val TAR {tar:.4f}"), facts


def calibrate_posture_threshold(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray,
                                predicted_posture: np.ndarray, rule: str, target_far: float) -> tuple[float, str, dict]:
    """Threshold of `inference.matching.verify_in_posture` from one split's claims: every concealed probe claims
    every person enrolled from the split's unconcealed images, scored against that person's template in the
    probe's predicted posture (`training.metrics.claim_distances`); the same rule as `calibrate_threshold`."""
    probes, refs = np.flatnonzero(concealed), np.flatnonzero(~concealed)
    _, claim, _, s = claim_distances(emb, identity, posture, probes, refs, predicted_posture)
    gen, imp = s[claim], s[~claim]
    thr, e, t_eer, tar, t_far = _operating_point(gen, imp, rule, target_far)
    facts = {"val_claims_eer": e, "val_claims_eer_threshold": t_eer, "val_claims_tar_at_target_far": tar,
             "val_genuine_claims": int(len(gen)), "val_impostor_claims": int(len(imp))}
    if rule == "eer":
        return thr, (f"EER point of the val split's claims against people enrolled from its unconcealed images "
                     f"({len(gen)} genuine / {len(imp)} impostor), template of the predicted posture; "
                     f"val EER {e:.4f}"), facts
    return thr, (f"largest threshold with FAR <= {target_far} over the val split's claims ({len(imp)} impostor), "
                 f"template of the predicted posture; val TAR {tar:.4f}"), facts


def calibrate_score_norm(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray,
                         predicted_posture: np.ndarray, cohort: Cohort, rule: str, target_far: float
                         ) -> tuple[float, str, dict]:
    """Threshold on the S-normalised posture-template distance from one split's claims (as
    `calibrate_posture_threshold`); the split's people are the cohort's, so each row leaves its own person out
    of its statistics (Cohort.overlap), as a cohort of other people would be."""
    probes, refs = np.flatnonzero(concealed), np.flatnonzero(~concealed)
    _, claim, _, by_posture = claim_distances(emb, identity, posture, probes, refs, predicted_posture)
    s = normalised_claims(emb, identity, posture, probes, refs, predicted_posture, by_posture,
                          dataclasses.replace(cohort, overlap=True))
    gen, imp = s[claim], s[~claim]
    thr, e, t_eer, tar, t_far = _operating_point(gen, imp, rule, target_far)
    facts = {"val_snorm_claims_eer": e, "val_snorm_claims_eer_threshold": t_eer,
             "val_snorm_claims_tar_at_target_far": tar}
    what = "EER point" if rule == "eer" else f"largest threshold with FAR <= {target_far}"
    return thr, (f"{what} of the val split's claims ({len(gen)} genuine / {len(imp)} impostor), template of the "
                 f"predicted posture S-normalised against the cohort (each person left out of their own "
                 f"statistics); val EER {e:.4f}"), facts


def _with_score_norm(bundle_dir: Path, manifest: BundleManifest, net_embed, data: ThzData, out_val: dict,
                     cfg: TrainingConfig) -> tuple[BundleManifest, dict]:
    """Write `cohort.npz` into `bundle_dir` (the training identities' train split embedded by `net_embed`) and
    return the manifest with its score_norm calibrated on the val split, whose outputs `out_val` are given."""
    train = data.select(("train",))
    train = train[~data.concealed[train]]
    cohort = Cohort.of(net_embed(data.images[train])["embedding"], data.identity[train], data.posture[train],
                       data.concealed[train])
    sha = cohort.save(bundle_dir / Cohort.FILE)
    val = data.select(("val",))
    thr, source, facts = calibrate_score_norm(out_val["embedding"], data.identity[val], data.posture[val],
                                              data.concealed[val], np.asarray(out_val["posture_logits"]).argmax(1),
                                              cohort, cfg.threshold_rule, cfg.target_far)
    sn = ScoreNorm(cohort_file=Cohort.FILE, cohort_sha256_16=sha, templates=len(cohort.templates),
                   identities=int(len(np.unique(cohort.identity))), top_k=cohort.top_k, threshold=thr,
                   threshold_source=source,
                   cohort_source=f"train split of {data.root} ({len(train)} unconcealed images of the training "
                                 "identities), one unit-mean template per person and posture")
    return manifest.model_copy(update={"score_norm": sn}), facts


def add_score_norm(bundle_dir: str | Path, data_dir: str | Path, cfg: TrainingConfig | None = None) -> dict:
    """Give an existing bundle a score-normalisation cohort (`cohort.npz`, from `data_dir`'s train split of the
    identities its model trained on) and its S-norm threshold (val split), rewriting the manifest in place; the
    model and its id are unchanged, so galleries enrolled with it stay valid."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    if manifest.posture_template_threshold is None:
        raise ValueError(f"{bundle_dir}: S-normalisation normalises the posture-template rule; calibrate it first "
                         f"with `thz export {bundle_dir} --posture-threshold --data DIR`")
    cfg = cfg or TrainingConfig.model_validate(manifest.training_config.get("training", {}))
    data = ThzData.load(data_dir)
    data.hold_out(0, list(manifest.training_config.get("heldout_identities", [])))
    if not len(data.select(("val",))) or not len(data.select(("train",))):
        raise ValueError(f"{data_dir}: a cohort needs a train split and its threshold a val split")
    embed = functools.partial(OnnxPredictor(bundle_dir, threads=2), reconstruct=False)
    with tempfile.TemporaryDirectory(dir=bundle_dir, prefix=".score-norm-") as tmp:
        new, facts = _with_score_norm(Path(tmp), manifest, embed, data, embed(data.images[data.select(("val",))]), cfg)
        new = new.model_copy(update={"dataset": manifest.dataset | {"threshold_calibration": dict(
            manifest.dataset.get("threshold_calibration", {})) | facts | {"score_norm_dataset": data.provenance()}}})
        BundleManifest.model_validate(new.model_dump())
        written = write_manifest(tmp, new)
        shutil.move(str(Path(tmp) / Cohort.FILE), str(bundle_dir / Cohort.FILE))
        shutil.move(str(written), str(bundle_dir / "manifest.json"))   # last: the manifest names the cohort's hash
    log.info("score normalisation written", extra={"bundle": str(bundle_dir), "threshold": new.score_norm.threshold})
    return {"bundle": str(bundle_dir), "model_id": manifest.model_id, "score_norm_threshold": new.score_norm.threshold,
            "cohort_templates": new.score_norm.templates, "cohort_identities": new.score_norm.identities} | facts


def add_posture_threshold(bundle_dir: str | Path, data_dir: str | Path, cfg: TrainingConfig | None = None) -> dict:
    """Calibrate `posture_template_threshold` of an existing bundle on `data_dir`'s val split (the identities
    its model held out stay out) with the bundle's own ONNX model, and rewrite its manifest in place.

    For bundles exported before the field existed; `export_bundle` calibrates it for new ones. The model,
    its id and verification_threshold are unchanged."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    # the calibration rule the model was exported with (its training config), as export_bundle uses
    cfg = cfg or TrainingConfig.model_validate(manifest.training_config.get("training", {}))
    data = ThzData.load(data_dir)
    data.hold_out(0, list(manifest.training_config.get("heldout_identities", [])))
    val = data.select(("val",))
    if len(val) == 0:
        raise ValueError(f"{data_dir}: no val split to calibrate on")
    out_val = OnnxPredictor(bundle_dir, threads=2)(data.images[val], reconstruct=False)
    thr, source, facts = calibrate_posture_threshold(
        out_val["embedding"], data.identity[val], data.posture[val], data.concealed[val],
        np.asarray(out_val["posture_logits"]).argmax(1), cfg.threshold_rule, cfg.target_far)
    cal = dict(manifest.dataset.get("threshold_calibration", {})) | facts | {
        "posture_template_dataset": data.provenance()}
    new = manifest.model_copy(update={"posture_template_threshold": thr, "posture_template_threshold_source": source,
                                      "dataset": manifest.dataset | {"threshold_calibration": cal}})
    BundleManifest.model_validate(new.model_dump())
    with tempfile.TemporaryDirectory(dir=bundle_dir, prefix=".calibrate-") as tmp:
        written = write_manifest(tmp, new)
        shutil.move(str(written), str(bundle_dir / "manifest.json"))   # atomic on one file system
    log.info("posture-template threshold written", extra={"bundle": str(bundle_dir), "threshold": thr})
    return {"bundle": str(bundle_dir), "model_id": manifest.model_id, "posture_template_threshold": thr,
            "threshold": manifest.verification_threshold} | facts


def _git_commit() -> str:
    """The source commit; '+dirty' when the training code has uncommitted changes."""
    return source_commit(("training",))


def export_bundle(run_dir: str | Path, out: str | Path, data_dir: str | Path | None = None,
                  cfg: TrainingConfig | None = None) -> dict:
    """Write `out/model.onnx` and `out/manifest.json` from the best checkpoint of `run_dir`.

    data_dir defaults to the dataset the run was trained on (config.json); its val split calibrates
    the threshold and feeds the parity check, its test split gives the manifest's metrics. The training
    data's provenance (path, hashes, the builder's seeds) goes into `training_config.dataset`, so
    `thz evaluate --protocol` can tell new people and new captures from the ones trained on.
    """
    run_dir, out = Path(run_dir), Path(out)
    run_cfg = json.loads((run_dir / RUN_CONFIG).read_text())
    cfg = cfg or TrainingConfig.model_validate(run_cfg["training_config"])
    net, info = load_run(run_dir)
    data_dir = Path(data_dir or run_cfg["dataset"]["path"])
    data = ThzData.load(data_dir)
    data.hold_out(0, list(info.get("heldout_identities", [])))  # the run's unseen identities stay unseen
    prov = data.provenance()
    trained_on = run_cfg["dataset"]
    for k in ("manifest_sha256_16", "content_sha256_16"):  # runs made before content hashes lack that key
        if k in trained_on and prov.get(k) != trained_on[k]:
            log.warning("the export dataset differs from the training dataset",
                        extra={"key": k, "export": prov.get(k), "training": trained_on[k]})
            prov[f"training_{k}"] = trained_on[k]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        tmp = Path(tmp)
        export_onnx(net, tmp / ONNX_NAME)
        val = data.select(("val",))
        out_val = TorchPredictor(net)(data.images[val], reconstruct=False)
        emb = out_val["embedding"]
        thr, source, facts = calibrate_threshold(emb, data.identity[val], data.concealed[val], cfg.threshold_rule,
                                                 cfg.target_far)
        p_thr, p_source, p_facts = calibrate_posture_threshold(
            emb, data.identity[val], data.posture[val], data.concealed[val],
            np.asarray(out_val["posture_logits"]).argmax(1), cfg.threshold_rule, cfg.target_far)
        manifest = BundleManifest(
            model_id=graph_model_id(tmp / ONNX_NAME), preset=info["model_config"]["preset"], input_size=64,
            embedding_size=net.cfg.embed_dim, postures=list(POSTURES), distance="cosine",
            verification_threshold=thr, threshold_source=source,
            posture_template_threshold=p_thr, posture_template_threshold_source=p_source,
            training_config={"kind": info["kind"], "best_epoch": info["epoch"], "model_config": info["model_config"],
                             "training": info["training_config"], "perceptual": info.get("perceptual", ""),
                             "heldout_identities": list(info.get("heldout_identities", [])),
                             "run": str(run_dir), "git_commit": _git_commit(),
                             "dataset": trained_on},   # the training data's provenance and seeds (protocols)
            dataset=prov | {"threshold_calibration": facts | p_facts},
            software_version=metadata.version("thz-face"),
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        manifest, sn_facts = _with_score_norm(tmp, manifest, functools.partial(TorchPredictor(net), reconstruct=False),
                                              data, out_val, cfg)
        manifest.dataset["threshold_calibration"] |= sn_facts
        stamp_metadata(tmp / ONNX_NAME, manifest)  # metadata_props; the graph id does not see them
        write_manifest(tmp, manifest)
        worst = parity(net, tmp, data.images[val[:64]], cfg.export_tolerance)
        test_metrics = headline(evaluate_split(OnnxPredictor(tmp), data, ("test",)))
        manifest.metrics = {"split": "test", "parity_max_abs": worst, "parity_tolerance": cfg.export_tolerance,
                            **test_metrics}
        write_manifest(tmp, manifest)
        for name in (ONNX_NAME, Cohort.FILE, "manifest.json"):
            shutil.move(str(tmp / name), str(out / name))
    size = (out / ONNX_NAME).stat().st_size
    log.info("bundle written", extra={"bundle": str(out), "model_id": manifest.model_id, "onnx_bytes": size})
    return {"bundle": str(out), "model_id": manifest.model_id, "onnx_mb": size / 1e6, "threshold": thr,
            "posture_template_threshold": p_thr, "score_norm_threshold": manifest.score_norm.threshold,
            "parity_max_abs": worst, "test_triplet_accuracy": test_metrics["triplet_accuracy"],
            "test_ssim": test_metrics["ssim"]}

"""Short seeded runs on the procedural fixture: determinism, resume, train -> evaluate -> export, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.training.conftest import small_config
from tests.training.fixture_data import make_dataset
from thzcore.bundle import read_manifest
from training.batches import make_batch
from training.data import ThzData, TripletIndex
from training.distill import ModelB
from training.model import preset_config
from training.objective import model_a_loss, model_b_loss
from training.predict import LAST, load_checkpoint
from training.sampler import BalancedTripletSampler
from training.trainer import Trainer

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning",
                                        "ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def data(dataset):
    return ThzData.load(dataset)


def _state(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_seeded_run_is_repeated_exactly_by_an_interrupted_and_resumed_one(data, tmp_path):
    # Two independently built trainers with one seed: the straight run and the interrupted + resumed run
    # must end with bit-identical weights (determinism and resume in one check).
    cfg = small_config(epochs=2, bn_batches=1, loss={"perceptual": 0.0})
    Trainer(data, "a", cfg, tmp_path / "x", progress=False).fit()
    Trainer(data, "a", cfg, tmp_path / "z", progress=False).fit(stop_after=1)
    assert load_checkpoint(tmp_path / "z" / LAST)["epoch"] == 1
    assert not _same(_state(tmp_path / "x" / LAST), _state(tmp_path / "z" / LAST))
    t = Trainer(data, "a", cfg, tmp_path / "z", progress=False)
    assert t.resume() and t.epoch == 1
    t.fit()
    assert _same(_state(tmp_path / "x" / LAST), _state(tmp_path / "z" / LAST))
    rows = (tmp_path / "z" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")


def test_the_seed_sets_initial_weights_and_batches(data, tmp_path):
    a = Trainer(data, "a", small_config(seed=0), tmp_path / "a", progress=False)
    b = Trainer(data, "a", small_config(seed=0), tmp_path / "b", progress=False)
    c = Trainer(data, "a", small_config(seed=1), tmp_path / "c", progress=False)
    assert _same(a.model.state_dict(), b.model.state_dict())
    assert not _same(a.model.state_dict(), c.model.state_dict())
    assert (a.sampler.epoch(0)[0].anchor == b.sampler.epoch(0)[0].anchor).all()


def test_resume_refuses_another_model(data, tmp_path):
    t = Trainer(data, "a", small_config(epochs=1), tmp_path / "r", progress=False)
    t.out.mkdir(parents=True)
    t.save(t.out / LAST, full=True)
    t = Trainer(data, "b", small_config(epochs=1), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="holds a model"):
        t.resume()


def test_model_b_teacher_sees_only_samples_with_a_visible_image(tmp_path):
    torch.manual_seed(0)
    d = ThzData.load(make_dataset(tmp_path / "d", n_identities=3, captures=3, drop_visible=10))
    idx = TripletIndex.build(d, ("train",))
    tb = BalancedTripletSampler(idx, 3, 5, 0).epoch(0)[0]
    batch = make_batch(idx, tb, None, np.random.default_rng(0))
    model = ModelB(preset_config("compact")).eval()
    seen = []
    model.teacher.register_forward_hook(lambda m, inp, out: seen.append(inp[1].shape[0]))
    cfg = small_config()
    _, parts, _ = model_b_loss(model, batch, cfg)
    n_has = int(batch.has_visible.sum())
    assert 0 < n_has < len(batch.has_visible) and seen == [n_has]
    assert {"teacher", "feature_distill", "logit_distill"} <= set(parts)
    # nobody has a visible image: Model B's loss is exactly Model A's on the student
    batch.has_visible[:] = False
    lb, parts_b, _ = model_b_loss(model, batch, cfg)
    la, _, _ = model_a_loss(model.student, batch, cfg)
    assert float(lb) == pytest.approx(float(la)) and "teacher" not in parts_b and len(seen) == 1


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Model A, 4 epochs on the fixture (a few seconds)."""
    run = tmp_path_factory.mktemp("run") / "a"
    summary = Trainer(data, "a", small_config(epochs=4, lr=3e-3), run, progress=False).fit()
    return run, summary


def test_train_then_evaluate_beats_chance(trained, dataset):
    run, summary = trained
    assert summary["epochs_run"] == 4 and (run / "loss_curve.png").stat().st_size > 0
    res = CliRunner().invoke(_cli(), ["evaluate", str(run), "--data", str(dataset), "--split", "test"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])
    # chance: triplet 0.5, posture 0.2, ROC AUC 0.5, rank-1 1/6
    assert m["triplet_accuracy"] > 0.8 and m["posture_accuracy"] > 0.6 and m["roc_auc"] > 0.8
    assert m["rank1_identification"] > 0.4 and m["eer"] < 0.35
    assert m["ssim"] > 0.1 and m["psnr"] > 8
    for k in ("ssim_gt_routing", "ssim_soft_routing", "tar_at_far1", "avg_positive_distance"):
        assert k in m
    report = (run / "eval_test" / "report.md").read_text()
    assert "triplet_accuracy" in report and (run / "eval_test" / "reconstructions.png").is_file()
    assert (run / "eval_test" / "embeddings.png").is_file()


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    run, _ = trained
    out = tmp_path_factory.mktemp("bundle") / "b"
    res = CliRunner().invoke(_cli(), ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.output.strip().splitlines()[-1])


def test_export_bundle_parity_and_manifest(bundle, dataset, tmp_path):
    path, out = bundle
    m = read_manifest(path)  # validates model_id == the graph's hash and the ONNX metadata against the manifest
    assert m.model_id == out["model_id"] and m.preset == "compact" and m.distance == "cosine"
    from thzcore.bundle import graph_model_id, read_onnx_metadata
    meta = read_onnx_metadata(path / "model.onnx")  # metadata_props: the file alone says how to use it
    assert meta["model_id"] == m.model_id == graph_model_id(path / "model.onnx")
    assert float(meta["verification_threshold"]) == m.verification_threshold and meta["preset"] == "compact"
    assert json.loads(meta["postures"]) == m.postures and meta["input_size"] == "64"
    assert max(out["parity_max_abs"].values()) <= 1e-4
    assert "EER point on the val split" in m.threshold_source and 0 < m.verification_threshold < 2
    assert 0 < m.posture_template_threshold < 2 and "predicted posture" in m.posture_template_threshold_source
    assert m.dataset["threshold_calibration"]["val_genuine_claims"] > 0
    # the score-normalisation cohort: one template per training identity and posture of the train split
    from inference.bundle import load_bundle
    from training.data import ThzData
    sn, loaded = m.score_norm, load_bundle(path)
    d = ThzData.load(dataset)
    tr = (d.split == "train") & ~d.concealed
    assert sn.templates == len({(i, p) for i, p in zip(d.identity[tr], d.posture[tr])}) == len(loaded.cohort.templates)
    assert sn.identities == len(np.unique(d.identity[tr])) and "S-normalised" in sn.threshold_source
    assert loaded.verification_rule("front-center") == (sn.threshold, "front-center", loaded.cohort)
    np.testing.assert_allclose(np.linalg.norm(loaded.cohort.templates, axis=1), 1.0, rtol=1e-6)
    assert m.training_config["kind"] == "a" and m.dataset["manifest_sha256_16"]
    assert len(m.dataset["content_sha256_16"]) == 16  # the images' bytes, not only their names
    # the training data's provenance, which `thz evaluate --protocol` checks seeds against
    assert m.training_config["dataset"]["content_sha256_16"] == m.dataset["content_sha256_16"]
    # the graph takes any batch size, and the bundle evaluates through ONNX Runtime
    import onnxruntime as ort
    s = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    e, lg, r = s.run(None, {"thz": np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)})
    assert e.shape == (3, 128) and lg.shape == (3, 5) and r.shape == (3, 1, 64, 64)
    res = CliRunner().invoke(_cli(), ["evaluate", str(path), "--data", str(dataset), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    mb = json.loads(res.output.strip().splitlines()[-1])
    assert mb["source"] == "bundle" and mb["triplet_accuracy"] == pytest.approx(m.metrics["triplet_accuracy"])
    assert 0 <= mb["enrolled_snorm_eer"] <= 1   # claims S-normalised against the train split's people


def test_a_bundle_without_score_normalisation_gets_it_in_place(bundle, dataset, tmp_path):
    import shutil
    from inference.bundle import BundleError, load_bundle
    from thzcore.bundle import read_manifest, write_manifest
    old = tmp_path / "old"
    shutil.copytree(bundle[0], old)
    m = read_manifest(old)
    (old / "cohort.npz").unlink()
    write_manifest(old, m.model_copy(update={"score_norm": None}))
    assert load_bundle(old).cohort is None and load_bundle(old).verification_rule("full-left")[2] is None
    res = CliRunner().invoke(_cli(), ["export", str(old), "--score-norm", "--data", str(dataset)])
    assert res.exit_code == 0, res.output
    after, loaded = read_manifest(old), load_bundle(old)
    assert after.model_id == m.model_id and after.posture_template_threshold == m.posture_template_threshold
    # the cohort made with ONNX Runtime here and with torch at export: the same templates to the parity figure
    delta = m.metrics["parity_max_abs"]["embedding"]
    exported = np.load(bundle[0] / "cohort.npz")
    np.testing.assert_allclose(loaded.cohort.templates, exported["templates"], atol=4 * delta + 1e-6)
    assert after.score_norm.templates == m.score_norm.templates and np.isfinite(after.score_norm.threshold)
    assert json.loads(res.output.strip().splitlines()[-1])["score_norm_threshold"] == after.score_norm.threshold
    # an altered or missing cohort is refused by name
    z = dict(np.load(old / "cohort.npz"))
    z["templates"] = z["templates"][::-1].copy()
    np.savez(old / "cohort.npz", **z)
    with pytest.raises(BundleError, match="cohort was altered"):
        load_bundle(old)
    (old / "cohort.npz").unlink()
    with pytest.raises(BundleError, match="cohort is missing"):
        load_bundle(old)


def test_a_bundle_without_the_posture_threshold_gets_one_in_place(bundle, dataset, tmp_path):
    import shutil
    from thzcore.bundle import read_manifest, write_manifest
    old = tmp_path / "old"
    shutil.copytree(bundle[0], old)
    m = read_manifest(old)
    write_manifest(old, m.model_copy(update={"posture_template_threshold": None, "posture_template_threshold_source": "",
                                             "score_norm": None}))   # an old bundle had neither
    before = read_manifest(old)      # an old bundle: valid without the field
    assert before.posture_template_threshold is None
    res = CliRunner().invoke(_cli(), ["export", str(old), "--posture-threshold", "--data", str(dataset)])
    assert res.exit_code == 0, res.output
    after = read_manifest(old)       # rewritten, still valid (hash of the decision fields)
    # calibrated with ONNX Runtime here, with torch at export: the embeddings differ by at most the parity figure
    # delta per component, so a distance by at most 2 sqrt(E) delta
    delta = m.metrics["parity_max_abs"]["embedding"]
    assert after.posture_template_threshold == pytest.approx(m.posture_template_threshold,
                                                             abs=2 * np.sqrt(m.embedding_size) * delta + 1e-12)
    assert (after.model_id, after.verification_threshold) == (before.model_id, before.verification_threshold)
    assert json.loads(res.output.strip().splitlines()[-1])["posture_template_threshold"] == after.posture_template_threshold
    res = CliRunner().invoke(_cli(), ["export", str(old), "--posture-threshold"])
    assert res.exit_code == 2 and "--data" in res.output


def test_export_fails_when_parity_is_violated(trained, bundle):
    from training.export import ParityError, parity
    from training.predict import load_run
    net, _ = load_run(trained[0])
    x = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    parity(net, bundle[0], x, 1e-4)  # the exported model agrees
    with torch.no_grad():  # the torch side drifts: the check must catch it
        net.posture_fc.bias.add_(1.0)
    with pytest.raises(ParityError, match="posture_logits"):
        parity(net, bundle[0], x, 1e-4)


def test_cli_train_model_b_and_refuse_overwrite(dataset, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[training]\nnum_threads = 1\nbatch_identities = 3\nbn_batches = 1\nwarmup_epochs = 0\n")
    args = ["--config", str(cfg), "train", "--model", "b", "--data", str(dataset), "--preset", "compact",
            "--epochs", "1", "--out", str(tmp_path / "b"), "--no-progress"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    s = json.loads(res.output.strip().splitlines()[-1])
    assert s["kind"] == "b" and s["epochs_run"] == 1
    ck = load_checkpoint(tmp_path / "b" / "best.pt")
    assert ck["kind"] == "b" and ck["model_config"]["preset"] == "compact"
    assert any(k.startswith("teacher.") for k in ck["model"])
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code != 0 and "--resume" in res.output


def _cli():
    from thz.cli import cli
    return cli


def test_identity_disjoint_holdout(dataset, tmp_path):
    d = ThzData.load(dataset)
    t = Trainer(d, "a", small_config(holdout_identities=2), tmp_path / "h", progress=False)
    assert t.heldout == [4, 5]
    seen = set(d.identity[t.train_index.anchors]) | set(d.identity[t.val_index.anchors])
    assert seen == {0, 1, 2, 3}
    t.out.mkdir(parents=True)
    t.save(t.out / "best.pt", full=False)
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--split", "heldout"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])
    assert m["n_images"] == 2 * 5 * 2 * 4  # every capture of identities 4 and 5
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--split", "test"])
    assert json.loads(res.output.strip().splitlines()[-1])["n_images"] == 4 * 5 * 2  # seen identities only
    with pytest.raises(ValueError, match="fewer than 2"):
        ThzData.load(dataset).hold_out(5)
    # the same images chosen by identity instead: every split of identities 4-5 is the held-out set
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--split", "all",
                                      "--identities", "4-5", "--out", str(tmp_path / "e45")])
    assert res.exit_code == 0, res.output
    by_id = json.loads(res.output.strip().splitlines()[-1])
    for k in ("n_images", "triplet_accuracy", "eer", "rank1_identification", "posture_accuracy"):
        assert by_id[k] == m[k], k
    assert "identities 4-5 only" in (tmp_path / "e45" / "report.md").read_text()
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--split", "test",
                                      "--identities", "0,2-3", "--out", str(tmp_path / "e023")])
    assert json.loads(res.output.strip().splitlines()[-1])["n_images"] == 3 * 5 * 2
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--identities", "4-9"])
    assert res.exit_code == 2 and "identities [6, 7, 8, 9] are not in" in res.output  # usage
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--identities", "5-4"])
    assert res.exit_code == 2 and "runs low-high" in res.output


@pytest.mark.parametrize("spec, ids", [("80-83", [80, 81, 82, 83]), ("0,3,5-6", [0, 3, 5, 6]), (" 7 ", [7]),
                                       ("2,1-2", [1, 2])])
def test_parse_identities(spec, ids):
    from thzcore.labels import parse_identity_list
    assert parse_identity_list(spec) == ids
    with pytest.raises(ValueError, match="neither an identity id nor a range"):
        parse_identity_list("a-3")


@pytest.mark.parametrize("through", [False, True])
def test_teacher_losses_reach_the_student_encoder_only_when_configured(dataset, through):
    torch.manual_seed(0)
    d = ThzData.load(dataset)
    idx = TripletIndex.build(d, ("train",))
    batch = make_batch(idx, BalancedTripletSampler(idx, 3, 5, 0).epoch(0)[0], None, np.random.default_rng(0))
    model = ModelB(preset_config("compact"))
    cfg = small_config(loss={"supcon": 0, "posture": 0, "reconstruction": 0},
                       distill={"feature": 0, "logit": 0, "teacher": 1, "teacher_trains_encoder": through})
    loss, _, _ = model_b_loss(model, batch, cfg)
    loss.backward()
    g = model.student.encoder.stem[0].weight.grad
    reached = g is not None and float(g.abs().sum()) > 0
    assert reached == through
    assert float(model.teacher.visible_encoder.stem[0].weight.grad.abs().sum()) > 0


def test_early_stopping_on_the_configured_metric(data, tmp_path):
    # an improvement must exceed min_delta = 2 in accuracy (impossible): epoch 1 sets the best, epoch 2
    # is one bad epoch = patience, so the run stops after 2 of 5 epochs and best.pt stays at epoch 1
    cfg = small_config(epochs=5, bn_batches=1, early_stop={"metric": "posture_accuracy", "patience": 1,
                                                           "min_delta": 2.0})
    s = Trainer(data, "a", cfg, tmp_path / "e", progress=False).fit()
    assert s["epochs_run"] == 2 and s["stopped_early"] and s["best_epoch"] == 1
    assert load_checkpoint(tmp_path / "e" / "best.pt")["epoch"] == 1


def test_identity_classifier_maps_ids_to_rows_and_skips_unknown_identities():
    from training.objective import IdentityClassifier
    from training.config import TrainingConfig
    head = IdentityClassifier([7, 3, 3, 11], embed_dim=4)
    assert head.weight.shape == (3, 4)
    assert head.rows(torch.tensor([3, 7, 11, 5, 12, -1])).tolist() == [0, 1, 2, -1, -1, -1]
    emb = torch.randn(4, 4)
    cfg = TrainingConfig()
    # a sample of an identity without a class vector (val-only, say) adds nothing
    with_unknown = head.loss(emb, torch.tensor([3, 7, 5, 12]), cfg)
    assert float(with_unknown) == pytest.approx(float(head.loss(emb[:2], torch.tensor([3, 7]), cfg)))
    assert float(head.loss(emb[:1], torch.tensor([5]), cfg)) == 0.0
    with pytest.raises(ValueError, match=">= 2"):
        IdentityClassifier([4], embed_dim=4)


def test_identity_loss_trains_its_head_resumes_with_it_and_stays_out_of_the_model(data, tmp_path):
    cfg = small_config(epochs=2, bn_batches=1, loss={"perceptual": 0.0, "identity": 1.0})
    t = Trainer(data, "b", cfg, tmp_path / "x", progress=False)
    w0 = t.identity_head.weight.detach().clone()
    t.fit(stop_after=1)
    ck = load_checkpoint(tmp_path / "x" / LAST)
    assert not torch.equal(ck["identity_head"]["weight"], w0)          # the class vectors learn
    assert not any(k.startswith("identity") for k in ck["model"])      # not part of the exported network
    assert "train_identity_cosface" in (tmp_path / "x" / "metrics.csv").read_text().splitlines()[0]
    plain = Trainer(data, "b", small_config(epochs=2, bn_batches=1, loss={"perceptual": 0.0}), tmp_path / "x",
                    progress=False)
    with pytest.raises(ValueError, match="with the identity loss"):
        plain.resume()
    again = Trainer(data, "b", cfg, tmp_path / "x", progress=False)
    assert again.resume()
    assert torch.equal(again.identity_head.weight, ck["identity_head"]["weight"])


def test_the_shipped_recipe_file_is_the_shipped_bundles_training_config():
    # config/train_shipped.toml plus the command line of docs/results.md must give the training config the
    # shipped bundle records: a recipe file that drifted from the bundle would not reproduce it.
    from pathlib import Path

    from pipeline.settings import load_settings
    root = Path(__file__).resolve().parents[2]
    recorded = json.loads((root / "inference/bundles/compact/manifest.json").read_text())["training_config"]["training"]
    cfg = load_settings(root / "config/train_shipped.toml").training.model_copy(
        update={"epochs": 60, "holdout_identities": 20, "num_threads": 2})    # the flags of the command
    assert cfg.model_dump(mode="json") == recorded

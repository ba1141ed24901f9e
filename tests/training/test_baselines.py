"""Classical baselines: the pairwise SSIM, each method against hand-computed answers, train-only fitting, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from training import baselines as bl
from training.data import ThzData
from training.losses import SSIM_K1, SSIM_K2, ssim
from training.metrics import verification_metrics
from training.pairwise_ssim import ssim_matrix

EPS32 = float(np.finfo(np.float32).eps)
C1, C2 = SSIM_K1 ** 2, SSIM_K2 ** 2
# SSIM computes variances as E[x^2] - mu^2 in float32: for pixels in [0, 1] the absolute error is a few
# eps (<= 4 eps); beside C2 in the denominator (s_xx + s_yy + C2) that bounds the error of SSIM by 8 eps / C2
SSIM_TOL = 8 * EPS32 / C2   # about 1.1e-3


def _cli():
    from thz.cli import cli
    return cli


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


# ---- pairwise SSIM ------------------------------------------------------------------------------------

def test_ssim_matrix_of_constant_images_by_hand():
    # constant a vs constant b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly (the C2 factor is 1)
    a = np.full((2, 64, 64), [[[0.2]], [[0.7]]], np.float32)
    b = np.full((3, 1, 64, 64), [[[[0.2]]], [[[0.5]]], [[[0.0]]]], np.float32)
    s = ssim_matrix(a, b)
    va, vb = np.array([0.2, 0.7])[:, None], np.array([0.2, 0.5, 0.0])[None, :]
    np.testing.assert_allclose(s, (2 * va * vb + C1) / (va ** 2 + vb ** 2 + C1), rtol=0, atol=SSIM_TOL)
    assert s.dtype == np.float32 and s.shape == (2, 3)


def test_ssim_matrix_equals_the_one_ssim_of_every_pair(dataset):
    data = ThzData.load(dataset)
    x, y = data.images[:7], data.images[40:45]
    s = ssim_matrix(x, y, rows_per_block=3)  # blocks on two threads, the last one short: tiling must not matter
    ref = np.stack([ssim(torch.from_numpy(x[i:i + 1]).expand(len(y), -1, -1, -1), torch.from_numpy(y)).numpy()
                    for i in range(len(x))])
    np.testing.assert_allclose(s, ref, rtol=0, atol=SSIM_TOL)
    assert np.abs(s - ref).max() < 1e-5  # what it measures on these images
    np.testing.assert_array_equal(ssim_matrix(x, y, threads=1), s)   # threads only split the rows
    assert ssim_matrix(x[:0], y).shape == (0, 5)
    with pytest.raises(ValueError, match="grey"):
        ssim_matrix(np.zeros((1, 3, 64, 64)), y)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_matrix(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))


# ---- hand-built datasets ---------------------------------------------------------------------------

def _blocks(weights) -> np.ndarray:
    """A 64x64 image holding weight w_k on the 8x8 block k (k = 0, 1, 2 along the top row), 0 elsewhere.

    The blocks have equal size, so the pixel cosine of two such images is the cosine of their weight vectors.
    """
    img = np.zeros((1, 64, 64), np.float32)
    for k, w in enumerate(weights):
        img[0, 0:8, 8 * k:8 * k + 8] = w
    return img


def _data(images, identity, posture, concealed, capture, split) -> ThzData:
    n = len(identity)
    return ThzData(Path("/nonexistent"), np.stack(images).astype(np.float32), np.array(identity, np.int64),
                   np.array(posture, np.int64), np.array(concealed, bool), np.array(capture, np.int64),
                   np.array(split), [f"{i}.png" for i in range(n)])


def _hand_data() -> ThzData:
    """3 identities, posture 0: test = u_i (unconcealed) and c_i (concealed); train = one more u_i each."""
    u = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    c = [(1, 0, 0), (0, 1, 0), (1, 0, 0.5)]   # identity 2's concealed capture points at identity 0
    imgs, ident, conc, cap, split = [], [], [], [], []
    for i in range(3):
        for w, cc, k, s in ((u[i], False, 0, "test"), (c[i], True, 0, "test"), (u[i], False, 1, "train")):
            imgs.append(_blocks(w))
            ident.append(i)
            conc.append(cc)
            cap.append(k)
            split.append(s)
    return _data(imgs, ident, [0] * len(ident), conc, cap, split)


def test_pixel_cosine_baseline_by_hand():
    data = _hand_data()
    fit = bl.fit_set(data, data.split == "train", np.isin(data.split, ["test"]))
    r = bl.verification_baselines(data, ("test",), fit, methods=("pixel",), progress=False)["pixel"]
    # anchors c0, c1 sit on their references (d = 0 < 1 to both negatives: 4 triplets right); c2 = (1, 0, 0.5):
    # cos to u2 = 0.5 / sqrt(1.25) = 0.447, to u0 = 1 / sqrt(1.25) = 0.894, to u1 = 0, so d(a,p) = 0.553 beats
    # u1 (d = 1) and loses to u0 (d = 0.106): 5 of 6 triplets
    s = 1 / np.sqrt(1.25)
    assert r["triplet_accuracy"] == pytest.approx(5 / 6) and r["n_triplets"] == 6
    assert r["avg_positive_distance"] == pytest.approx((1 - 0.5 * s) / 3)
    assert r["avg_negative_distance"] == pytest.approx((6 - s) / 6)   # five negatives at 1, one at 1 - s
    # genuine (0, 0, 1 - 0.5 s) vs impostors (1, 1, 1, 1, 1 - s, 1): 17 of 18 pairs ordered right
    assert r["roc_auc"] == pytest.approx(17 / 18)
    assert r["rank1_identification"] == pytest.approx(2 / 3)  # c2's nearest template is identity 0's
    assert r["posture_accuracy"] == 1.0
    assert r["same_posture_roc_auc"] == r["roc_auc"]          # one posture: the two protocols coincide


def test_ncc_ignores_gain_and_offset_and_pixel_cosine_does_not():
    x = np.random.default_rng(0).random((1, 1, 64, 64))
    y = 0.5 * x + 0.2                                         # the same face, other gain and offset
    ncc, pix = bl.Ncc(), bl.Pixel()
    d = lambda m: float(m.distance(m.represent(x), m.represent(y))[0, 0])  # noqa: E731
    # a float64 cosine of unit vectors: rounding of order sqrt(4096) eps64
    assert abs(d(ncc)) < 1e3 * np.finfo(np.float64).eps
    # pixel cosine of x and 0.5x + 0.2: uniform x in [0,1) gives 1 - cos of about 0.03, far from 0
    assert d(pix) > 0.01


def test_same_posture_protocol_and_tar_at_far_0p1_by_hand():
    # probes 0 (posture 0) and 1 (posture 1) of identities 0, 1; references of both in both postures
    emb = np.array([[1.0, 0.0], [0.0, 1.0],                   # probes: id 0 p0, id 1 p1
                    [0.8, 0.6], [0.6, 0.8],                   # refs id 0: p0, p1
                    [0.6, 0.8], [0.0, 1.0]])                  # refs id 1: p0, p1
    ident, post = np.array([0, 1, 0, 0, 1, 1]), np.array([0, 1, 0, 1, 0, 1])
    m = verification_metrics(emb, ident, np.array([0, 1]), np.arange(2, 6), posture=post)
    # same-posture pairs: probe 0 x ref 2 genuine d = 0.2, x ref 4 impostor 0.4; probe 1 x ref 3 impostor 0.2,
    # x ref 5 genuine 0. AUC over (genuine, impostor) pairs: (0.2, 0.4) 1, (0.2, 0.2) tie 1/2, (0, *) 1 + 1
    assert (m["same_posture_n_genuine"], m["same_posture_n_impostor"]) == (2, 2)
    assert m["same_posture_roc_auc"] == pytest.approx(3.5 / 4)
    # all postures: genuine (0.2, 0.4, 0.2, 0), impostor (0.4, 1, 0.4, 0.2). FAR <= 0.1% admits no impostor:
    # the largest such threshold is d = 0, which accepts 1 of 4 genuines (1 of 2 same-posture ones)
    assert (m["n_genuine"], m["n_impostor"]) == (4, 4)
    # genuine 0.2 beats 3 impostors and ties 1 (3.5), 0.4 beats 1 and ties 2 (2), 0.2 again 3.5, 0 beats all 4
    assert m["roc_auc"] == pytest.approx((3.5 + 2 + 3.5 + 4) / 16)
    assert m["tar_at_far0p1"] == 0.25 and m["same_posture_tar_at_far0p1"] == 0.5
    assert m["far0p1_threshold"] == 0.0


def _separable(n_ids: int, per_id: int, seed: int, split: str, capture0: int = 0) -> list[tuple]:
    """Identity = a small offset along its own random direction; a large nuisance (gain pattern) on top.

    The nuisance amplitude (+-0.25 on a +-1 pattern) dwarfs the identity offsets (0.04), so raw pixels are
    dominated by it, while the classes stay linearly separable (the nuisance spans one direction).
    """
    rng = np.random.default_rng(seed)
    dirs = np.random.default_rng(123).choice([-1.0, 1.0], (n_ids, 64 * 64))
    nuis = np.random.default_rng(321).choice([-1.0, 1.0], 64 * 64)
    rows = []
    for i in range(n_ids):
        for k in range(per_id):
            for conc in (False, True):
                x = 0.5 + 0.04 * dirs[i] + rng.uniform(-0.25, 0.25) * nuis + rng.normal(0, 0.002, 64 * 64)
                rows.append((np.clip(x, 0, 1).reshape(1, 64, 64), i, 0, conc, capture0 + k, split))
    return rows


def test_fisherfaces_separate_a_linearly_separable_set_that_pixels_do_not():
    rows = _separable(4, 10, 1, "train") + _separable(4, 2, 2, "test", capture0=10)
    data = _data(*zip(*rows))
    fit = bl.fit_set(data, data.split == "train", data.split == "test")
    r = bl.verification_baselines(data, ("test",), fit, methods=("pixel", "fisher"), progress=False)
    f = r["fisher"]
    assert f["triplet_accuracy"] == 1.0 and f["eer"] == 0.0 and f["roc_auc"] == 1.0
    assert f["rank1_identification"] == 1.0 and f["lda_components"] == 3   # 4 identities -> 3 discriminants
    assert r["pixel"]["triplet_accuracy"] < 0.9                           # the nuisance beats raw pixels


def test_pca_and_lda_are_fitted_on_train_images_only(dataset, monkeypatch):
    data = ThzData.load(dataset)
    train = data.split == "train"
    data.images[train, :, :4, :4] = 0.0        # a marker: only evaluated (non-train) images carry it
    data.images[~train, :, :4, :4] = 1.0
    seen: list[np.ndarray] = []
    for cls in (bl.Pca, bl.Fisher):
        orig = cls.fit

        def spy(self, fit, orig=orig):
            seen.append(fit.images)
            return orig(self, fit)
        monkeypatch.setattr(cls, "fit", spy)
    b = bl.run_baselines(data, ("test",), train, progress=False)
    assert len(seen) == 2 and all((s[:, :, :4, :4] == 0).all() for s in seen)   # no test image in any fit
    assert b["fit"]["n_images"] == int(train.sum())
    # and the fitted PCA's mean knows nothing of the marker
    p = bl.Pca()
    p.fit(bl.fit_set(data, train, data.split == "test"))
    assert np.abs(p.pca.mean_.reshape(64, 64)[:4, :4]).max() == 0.0


def test_fit_set_excludes_the_evaluated_images_and_needs_something_left(dataset, tmp_path):
    data = ThzData.load(dataset)
    train = data.split == "train"
    data.keep_identities([0, 1, 2])
    with pytest.raises(ValueError, match="--fit-data"):
        bl.fit_set(data, train, np.isin(data.split, ["train", "val", "test"]) | train)
    # --split all --identities 0-2: fitted on the train captures of the OTHER identities (3-5)
    fit = bl.fit_set(data, train, np.isin(data.split, ["train", "val", "test"]))
    assert set(fit.identity) == {3, 4, 5} and fit.same_dataset
    # --fit-data naming the evaluated dataset again changes nothing: its evaluated images stay out
    again = bl.fit_set(data, train, np.isin(data.split, ["test"]), fit_data=ThzData.load(dataset))
    test_faces = {im.tobytes() for im in data.images[data.split == "test"]}
    assert again.same_dataset and not any(im.tobytes() in test_faces for im in again.images)
    other = ThzData.load(_copy(dataset, tmp_path))
    fit = bl.fit_set(data, train, np.isin(data.split, ["test"]), fit_data=other)
    assert not fit.same_dataset and len(fit.identity) == int((other.split == "train").sum())
    assert not fit.same_people  # no dataset.json: unknown provenance counts as other people


def _copy(dataset: Path, tmp_path: Path) -> Path:
    import shutil
    return Path(shutil.copytree(dataset, tmp_path / "copy"))


def test_same_people_from_the_population_seed(tmp_path):
    import json
    for name, seed in (("a", 1234), ("b", 1234), ("c", 999)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dataset.json").write_text(json.dumps({"plan": {"population_seed": seed}}))
    (tmp_path / "lab").mkdir()
    d = {k: _data([_blocks((1,))], [0], [0], [False], [0], ["train"]) for k in ("a", "b", "c", "lab")}
    for k in d:
        d[k].root = tmp_path / k
    assert bl.same_people(d["a"], d["b"])          # another capture seed of one population
    assert not bl.same_people(d["a"], d["c"])      # another population: identity 0 is someone else
    assert not bl.same_people(d["a"], d["lab"])    # unknown provenance: assume other people


def test_reconstruction_baselines_by_hand():
    # one identity pair, posture 0; identity 0: target capture 0 = 0.5, train captures 1, 2 = 0.3, 0.7;
    # identity 1: train capture 1 = 0.9. Concealed anchor of id 0, capture 0 = 0.1.
    flat = lambda v: np.full((1, 64, 64), v, np.float32)  # noqa: E731
    rows = [(flat(0.5), 0, 0, False, 0, "test"), (flat(0.1), 0, 0, True, 0, "test"),
            (flat(0.3), 0, 0, False, 1, "train"), (flat(0.7), 0, 0, False, 2, "train"),
            (flat(0.9), 1, 0, False, 1, "train"), (flat(0.2), 1, 0, True, 1, "train")]
    data = _data(*zip(*rows))
    train = data.split == "train"
    fit = bl.fit_set(data, train, data.split == "test")
    r = bl.reconstruction_baselines(data, ("test",), fit, train)

    def psnr(pred: float) -> float:
        return float(10 * np.log10(1.0 / (pred - 0.5) ** 2))

    def ssim_const(a: float, b: float = 0.5) -> float:
        return (2 * a * b + C1) / (a * a + b * b + C1)
    # oracle: mean of id 0's other train captures = 0.5 (exact); posture mean of OTHER identities = 0.9;
    # second capture: the nearest capture index to 0 is capture 1 (0.3); concealed input 0.1
    assert r["oracle"]["psnr"] == pytest.approx(100.0) and r["oracle"]["ssim"] == pytest.approx(1.0, abs=SSIM_TOL)
    for key, v in (("posture_mean", 0.9), ("second_capture", 0.3), ("concealed", 0.1)):
        assert r[key]["n"] == 1
        assert r[key]["psnr"] == pytest.approx(psnr(v), rel=1e-5), key
        assert r[key]["ssim"] == pytest.approx(ssim_const(v), abs=SSIM_TOL), key


def test_identity_score_tells_the_right_face_from_a_wrong_one():
    data = _hand_data()
    anchors = np.flatnonzero(data.concealed & (data.split == "test"))            # identities 0, 1, 2
    targets = np.array([np.flatnonzero((data.identity == i) & ~data.concealed & (data.split == "test"))[0]
                        for i in data.identity[anchors]])
    embed = bl.Pixel().represent
    right = bl.identity_score(embed, data, anchors, targets, data.images[targets])
    wrong = bl.identity_score(embed, data, anchors, targets, np.roll(data.images[targets], 1, axis=0))
    # each prediction IS its target: distance 0 to it, 1 to the other people's (disjoint blocks)
    assert right["identity_accuracy"] == 1.0 and right["identity_roc_auc"] == 1.0 and right["identity_eer"] == 0.0
    assert right["identity_n_genuine"] == 3 and right["identity_n_impostor"] == 6
    # the next person's face: genuine pairs all at d = 1; of the six impostors three at 0 (the face shown),
    # three at 1 (ties count 1/2): AUC 1/4; accuracy: d = 1 is never below a d of 0 or 1
    assert wrong["identity_accuracy"] == 0.0 and wrong["identity_roc_auc"] == pytest.approx(0.25)


def test_identity_score_only_counts_the_own_target_as_genuine():
    """A prediction that copies one of the person's other scans is not credited for matching that scan."""
    data = _hand_data()
    anchors = np.flatnonzero(data.concealed & (data.split == "test"))
    targets = np.array([np.flatnonzero((data.identity == i) & ~data.concealed & (data.split == "test"))[0]
                        for i in data.identity[anchors]])
    # identity 0's target shows a fourth pattern; the prediction copies identity 0's train scan (1, 0, 0)
    data.images[targets[0]] = _blocks((0, 0, 0, 1))
    copy = data.images[targets].copy()
    copy[0] = data.images[(data.identity == 0) & ~data.concealed & (data.split == "train")][0]
    r = bl.identity_score(bl.Pixel().represent, data, anchors, targets, copy)
    # anchor 0: d(copy, own target) = 1 ties its impostors (0,1,0), (0,0,1) at 1: both triplets fail (a score that
    # took the copied scan as a reference would give d = 0); anchors 1 and 2 show their own target: 4 of 6 pass
    assert r["identity_accuracy"] == pytest.approx(4 / 6) and r["identity_n_genuine"] == 3
    with pytest.raises(ValueError, match="not among the identity references"):
        bl.identity_score(bl.Pixel().represent, data, anchors, targets, copy, references=targets[1:])


def test_oracle_of_a_whole_dataset_averages_the_other_captures_of_any_split():
    flat = lambda v: np.full((1, 64, 64), v, np.float32)  # noqa: E731
    rows = [(flat(0.5), 0, 0, False, 0, "test"), (flat(0.1), 0, 0, True, 0, "test"),
            (flat(0.3), 0, 0, False, 1, "val"), (flat(0.9), 0, 0, False, 2, "train"),
            (flat(0.2), 1, 0, False, 1, "train"), (flat(0.2), 1, 0, True, 1, "train")]
    data = _data(*zip(*rows))
    train = data.split == "train"
    fit = bl.fit_set(data, train, np.zeros(len(data), bool))
    a, t, pred = bl.reconstruction_predictions(data, ("test",), fit, bl.oracle_pool(data, ("test",), train))["oracle"]
    assert pred[0].mean() == pytest.approx(0.9)                      # a held-back split: train captures only
    splits = ("train", "val", "test")
    a, t, pred = bl.reconstruction_predictions(data, splits, fit, bl.oracle_pool(data, splits, train))["oracle"]
    k = int(np.flatnonzero(a == 1)[0])                               # the test anchor of identity 0
    assert pred[k].mean() == pytest.approx((0.3 + 0.9) / 2)          # every other capture, the target left out


# ---- the commands -------------------------------------------------------------------------------------

def test_cli_baselines_round_trip(dataset, tmp_path):
    res = CliRunner().invoke(_cli(), ["baselines", "--data", str(dataset), "--out", str(tmp_path / "b"),
                                      "--no-progress"])
    assert res.exit_code == 0, res.output
    s = _last_json(res.output)
    assert set(s["verification"]) == set(bl.METHODS) and set(s["reconstruction"]) == set(bl.RECONSTRUCTIONS)
    # the fixture's identities are blob constellations drawn per identity: template matching works on it
    assert s["verification"]["pixel"]["triplet_accuracy"] > 0.7
    assert s["fit"]["n_images"] == 6 * 5 * 2 * 2 and s["n_images"] == 6 * 5 * 2
    assert "| raw-pixel cosine |" in res.output and "| method | AUC |" in res.output   # the table on stdout
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert saved["baselines"]["verification"]["ssim"]["triplet_accuracy"] == \
        s["verification"]["ssim"]["triplet_accuracy"]
    assert "Fisherfaces" in (tmp_path / "b" / "report.md").read_text()
    # every image evaluated and none left to fit on: a clear error naming the fix
    res = CliRunner().invoke(_cli(), ["baselines", "--data", str(dataset), "--split", "all", "--out",
                                      str(tmp_path / "c")])
    assert res.exit_code == 2 and "--fit-data" in res.output  # a usage error (README "Exit codes")
    # open set: identities 0-2 evaluated, fitted on another dataset's train split
    res = CliRunner().invoke(_cli(), ["baselines", "--data", str(dataset), "--split", "all", "--identities", "0-2",
                                      "--fit-data", str(_copy(dataset, tmp_path)), "--out", str(tmp_path / "d"),
                                      "--no-progress"])
    assert res.exit_code == 0, res.output
    s = _last_json(res.output)
    assert s["n_images"] == 3 * 5 * 2 * 4 and not s["fit"]["same_dataset"] and s["fit"]["n_identities"] == 6


def test_cli_evaluate_with_baselines(dataset, tmp_path):
    from tests.training.conftest import small_config
    from training.trainer import Trainer
    t = Trainer(ThzData.load(dataset), "a", small_config(), tmp_path / "run", progress=False)
    t.out.mkdir(parents=True)
    t.save(t.out / "best.pt", full=False)   # an untrained network is enough for the round trip
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--baselines",
                                      "--out", str(tmp_path / "ev"), "--no-progress"])
    assert res.exit_code == 0, res.output
    s = _last_json(res.output)
    assert "same_posture_eer" in s and "tar_at_far0p1" in s and set(s["baselines"]["verification"]) == set(bl.METHODS)
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| **Model A** |" in report and "| SSIM template matching |" in report and "oracle" in report
    assert "identity acc." in report and "Triplet accuracy per posture" in report
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0 <= m["reconstruction_identity"]["identity_accuracy"] <= 1
    assert "identity_eer" in m["baselines"]["reconstruction"]["posture_mean"]
    assert set(m["triplet_accuracy_per_posture"]) == set(m["baselines"]["verification"]["pca"]
                                                         ["triplet_accuracy_per_posture"])
    assert m["baselines"]["verification"]["pca"]["n_triplets"] == m["n_triplets"]   # the same triplets
    # --fit-data alone: no baselines, but the network's claims S-normalised against that set's cohort
    res = CliRunner().invoke(_cli(), ["evaluate", str(t.out), "--data", str(dataset), "--fit-data",
                                      str(_copy(dataset, tmp_path)), "--out", str(tmp_path / "fit"), "--no-progress"])
    assert res.exit_code == 0, res.output
    alone = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert "baselines" not in alone and alone["score_norm"]["cohort"] and "enrolled_snorm_eer" in alone
    assert alone["score_norm"]["cohort"] != m["score_norm"]["cohort"]   # the given set, not the evaluated one


def test_cli_baselines_without_out_writes_into_the_data_directory(dataset, tmp_path, monkeypatch):
    data_dir, cwd = tmp_path / "thz-data", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("THZ_DATA_DIR", str(data_dir))
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(_cli(), ["baselines", "--data", str(dataset), "--no-progress"])
    assert res.exit_code == 0, res.output
    reports = list((data_dir / "evaluations").glob("baselines_*_test/report.md"))
    assert len(reports) == 1 and not any(cwd.iterdir())      # nothing in the working directory

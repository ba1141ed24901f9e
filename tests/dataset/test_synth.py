"""The synthetic dataset: counts, split rules, determinism whatever the Dask cluster, build order, stop and
resume, CLI, reference layout round trip."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from thz.cli import cli
from pipeline.settings import Settings
from thzcore.labels import POSTURES
from thzcore.manifest import content_hash, read_manifest
from dataset.reference_layout import NAME_RE, export_reference, import_reference
from dataset.errors import BuildInterrupted
from dataset.synth import DatasetPlan, Unit, _Worker, make_dataset

pytestmark = pytest.mark.integration  # the dataset builder's Dask worker processes

POST = ("front-center", "full-left")
PLAN = DatasetPlan(n_identities=2, captures=3, postures=POST)  # 2 x 2 x 3 x 2 = 24 THz + 8 visible


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """PLAN built on a 2-worker LocalCluster."""
    out = tmp_path_factory.mktemp("ds")
    summary = make_dataset(out, PLAN, Settings(), workers=2, progress=False)
    return out, summary


def _done_thz(out: Path) -> list[Unit]:
    """The THz units whose sidecar is written (found or not)."""
    return [u for u in PLAN.units() if (out / f"{u.stem}.json").is_file()]


def test_split_rules_on_the_paper_shape():
    plan = DatasetPlan()  # 20 identities x 5 postures x 7 captures
    for i in range(plan.n_identities):
        for p in plan.postures:
            splits = Counter(plan.split_of(i, p, k) for k in range(plan.captures))
            assert splits == {"test": 1, "val": 1, "train": 5}
    again = DatasetPlan()
    assert all(plan.split_of(3, p, k) == again.split_of(3, p, k) for p in POSTURES for k in range(7))
    other = DatasetPlan(seed=1)
    assert any(plan.split_of(i, p, k) != other.split_of(i, p, k)
               for i in range(20) for p in POSTURES for k in range(7))
    # two captures: one test, one train
    assert Counter(DatasetPlan(captures=2).split_of(0, "front-left", k) for k in range(2)) == {"test": 1, "train": 1}


def test_build_order_reaches_every_identity_before_later_captures():
    plan = DatasetPlan(n_identities=20, captures=7)
    order = plan.build_order()
    visible = [j for j in order if j[0] == "visible"]
    thz = [j[1] for j in order if j[0] == "thz"]
    assert order[:len(visible)] == visible and len(visible) == 200  # cheap, and the teacher needs them all
    assert sorted(thz, key=plan.units().index) == plan.units()     # every unit once
    assert {(u.identity, u.concealed) for u in thz[:40]} == {(i, c) for i in range(20) for c in (True, False)}
    counts = Counter()
    for n, u in enumerate(thz, 1):  # wherever a build stops, no identity is more than one scan pair ahead
        counts[u.identity] += 1
        if n % 2 == 0:
            assert max(counts.values()) - min(counts[i] for i in range(20)) <= 2
    # identity-major order (the manifest's) would have left identities 1..19 out of the first 70 units
    assert {u.identity for u in plan.units()[:70]} == {0}


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="n_identities=1"):
        DatasetPlan(n_identities=1)
    with pytest.raises(ValueError, match="bits=12"):
        DatasetPlan(bits=12)


def test_counts_manifest_and_images(made):
    out, summary = made
    # at 340 GHz a face is seen by its glints; a capture whose glints are too weak for the locator is
    # left out, as the paper left out unusable captures (1158 of 1400)
    assert summary.failed == 0 and summary.thz_images + summary.no_face == 24 and summary.visible_images == 8
    assert summary.thz_images >= 12
    rows = read_manifest(out)
    thz = [r for r in rows if r.modality == "thz"]
    vis = [r for r in rows if r.modality == "visible"]
    assert len(thz) == summary.thz_images and len(vis) == 8
    assert Counter((r.identity, r.posture, r.concealed) for r in vis) == {
        (i, p, c): 1 for i in range(2) for p in POST for c in (True, False)}
    # the split is the plan's, whatever was found: one capture per identity and posture in test and val
    units = PLAN.units()
    assert Counter(PLAN.split_of(u.identity, u.posture, u.capture) for u in units) == {"train": 8, "val": 8, "test": 8}
    test = Counter((r.identity, r.posture, r.concealed) for r in thz if r.split == "test")
    assert all(n == 1 for n in test.values())
    assert sum(summary.splits.values()) == summary.thz_images
    # a capture index never spans two splits, and every unit left its sidecar (found or not)
    by_cap = defaultdict(set)
    for r in thz:
        by_cap[(r.identity, r.posture, r.capture)].add((r.split, r.concealed))
        assert r.split == PLAN.split_of(r.identity, r.posture, r.capture)
    for v in by_cap.values():
        assert len({s for s, _ in v}) == 1
    assert all((out / f"{u.stem}.json").is_file() for u in units)
    with Image.open(out / thz[0].path) as im:
        assert im.mode == "I;16" and im.size == (64, 64)
        a = np.asarray(im)
        assert a.max() == 65535  # normalised ROI reaches 1 at its high percentile
    assert (out / "contact_sheet.png").is_file()
    info = json.loads((out / "dataset.json").read_text())
    assert info["plan"]["seed"] == 0 and info["settings"]["processing"]["frames_averaged"] == 3
    assert info["content_sha256_16"] == summary.content_sha256_16 == content_hash(out)
    assert len(info["git_commit"]) >= 12  # this checkout's commit (tests run from the repository)
    meta = json.loads((out / f"{Unit(1, 'full-left', 2, True).stem}.json").read_text())
    assert meta["frame_ids"] == [0, 1, 2] and meta["truth"]["identity"] == 1 and meta["truth"]["concealed"]


def test_one_worker_builds_the_bytes_of_two(made, tmp_path):
    """The issue's check: the 2-worker LocalCluster build and a 1-worker one have the same content hash."""
    out, two = made
    one = make_dataset(tmp_path / "one", PLAN, Settings(), workers=1, progress=False)
    assert one.workers == 1 and two.workers == 2
    assert one.content_sha256_16 == two.content_sha256_16 == content_hash(out) != ""
    info = json.loads((tmp_path / "one" / "dataset.json").read_text())
    assert info["complete"] and info["code_sha256_16"] == two.code_sha256_16 and len(info["code_sha256_16"]) == 16
    assert info["libraries"]["numpy"] == np.__version__ and info["libraries"]["numba"]


def test_stopped_build_keeps_every_identity_and_resumes_to_the_same_bytes(made, tmp_path):
    """Stopped (as by Ctrl-C) after the visible images and 4 THz units, on a cluster of its own (--scheduler),
    whose one worker runs two threads (the jobs of one process take turns); resumed, the bytes are the
    2-worker build's."""
    from distributed import LocalCluster

    out, two = made
    part = tmp_path / "part"
    seen: list[str] = []

    def stop_after_12(kind, value):
        seen.append(kind)
        if len(seen) == 12:
            raise KeyboardInterrupt

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        with pytest.raises(BuildInterrupted, match=r"interrupted: \d+ of 32 images made .* run the same command"):
            make_dataset(part, PLAN, Settings(), progress=False, on_done=stop_after_12,
                         scheduler=cluster.scheduler_address)
        # jobs start in build order, two at a time: the first THz unit starts once 7 visible images are done
        # and may finish before the 8th, which ran beside it (the manifest check below wants all 8 made)
        assert seen[:7] == ["visible"] * 7 and seen.index("thz") >= 7
        done = _done_thz(part)
        assert 4 <= len(done) < 24
        assert {u.identity for u in done} == {0, 1}  # capture-major: both identities, not all of identity 0
        assert {u.capture for u in done} == {0}
        info = json.loads((part / "dataset.json").read_text())
        assert not info["complete"] and info["scheduler"] == cluster.scheduler_address
        assert len(read_manifest(part)) == info["thz_images"] + 8
        again = make_dataset(part, PLAN, Settings(), progress=False, scheduler=cluster.scheduler_address)
    # a site's worker finishes the units it had started when the build stopped (two threads: two at most)
    assert again.complete and len(done) <= again.skipped_done - 8 <= len(done) + 2
    assert again.made_now + again.skipped_done == 32
    assert again.content_sha256_16 == two.content_sha256_16


def test_units_are_deterministic_whatever_the_worker(made, tmp_path):
    out, _ = made
    w = _Worker(Settings().model_dump_json(), PLAN, str(tmp_path))
    found = [Unit(r.identity, r.posture, r.capture, r.concealed) for r in read_manifest(out) if r.modality == "thz"]
    for u in (found[-1], found[0]):  # other order, other process
        w.thz(u)
        assert (tmp_path / f"{u.stem}.png").read_bytes() == (out / f"{u.stem}.png").read_bytes()
    assert w.sim_cfg.population_seed == PLAN.population_seed and w.sim_cfg.seed == PLAN.seed


def test_resume_remakes_only_what_is_missing(made):
    out, _ = made
    before = (out / "manifest.csv").read_text()
    content_before = content_hash(out)
    gone = [Unit(0, "full-left", 1, True), Unit(1, "full-left", 0, False), Unit(1, "front-center", 2, True)]
    for u in gone:
        (out / f"{u.stem}.json").unlink()
        (out / f"{u.stem}.png").unlink(missing_ok=True)   # a capture without a face has no image
    (out / "visible/id001/full-left_concealed.png").unlink()
    s = make_dataset(out, PLAN, Settings(), workers=1, progress=False)
    assert s.made_now == 4 and s.skipped_done == 28
    assert (out / "manifest.csv").read_text() == before
    assert s.content_sha256_16 == content_before  # the remade images are the same bytes
    with pytest.raises(ValueError, match="different plan"):
        make_dataset(out, DatasetPlan(n_identities=2, captures=3, postures=POST, seed=5), Settings(), progress=False)


def test_a_build_grows_to_the_bytes_of_a_fresh_one(tmp_path):
    """Two identities built, then the same plan with three: the grown folder has the bytes of a fresh
    3-identity build (every unit is seeded per identity); fewer identities, or another change, is refused."""
    plan2 = DatasetPlan(n_identities=2, captures=2, postures=POST[:1])
    plan3 = DatasetPlan(n_identities=3, captures=2, postures=POST[:1])
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    make_dataset(grown, plan2, Settings(), workers=0, progress=False)
    g = make_dataset(grown, plan3, Settings(), workers=0, progress=False)
    f = make_dataset(fresh, plan3, Settings(), workers=0, progress=False)
    assert g.complete and g.skipped_done == 12 and g.made_now == 6  # 8 THz + 4 visible kept, 4 + 2 made
    assert g.content_sha256_16 == f.content_sha256_16 != ""
    assert (grown / "manifest.csv").read_text() == (fresh / "manifest.csv").read_text()
    for other in (plan2, DatasetPlan(n_identities=4, captures=3, postures=POST[:1])):
        with pytest.raises(ValueError, match="only --identities may grow"):
            make_dataset(grown, other, Settings(), progress=False)


def test_content_hash_sees_what_the_manifest_hash_does_not(made, tmp_path):
    import shutil
    from training.data import manifest_hash

    out, _ = made
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert content_hash(copy) == content_hash(out)
    row = read_manifest(copy)[3]
    with Image.open(copy / row.path) as im:
        a = np.asarray(im).copy()
    a[10, 10] ^= 1  # one pixel, one bit: what a changed simulator does to every image
    Image.fromarray(a).save(copy / row.path)
    assert manifest_hash(copy) == manifest_hash(out) and content_hash(copy) != content_hash(out)


def test_cli_resumes_and_exports(made, tmp_path):
    out, summary = made
    n = summary.thz_images
    res = CliRunner().invoke(cli, ["sim", "dataset", "--out", str(out), "--small", "--identities", "2",
                                   "--captures", "3", "--postures", ",".join(POST), "--workers", "1", "--no-progress",
                                   "--export-reference"])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["made_now"] == 0 and last["skipped_done"] == 32 and last["thz_images"] == n
    # a triplet per concealed capture whose unconcealed partner was found: at most 4 per split
    assert set(last["reference"]["triplets"]) == {"train", "val", "test"}
    assert all(0 <= v <= 4 for v in last["reference"]["triplets"].values())
    assert sum(last["reference"]["triplets"].values()) > 0


def test_reference_layout_round_trip(made, tmp_path):
    out, summary = made
    n = summary.thz_images
    ref = tmp_path / "ref"
    info = export_reference(out, ref, seed=0)
    assert info["thz_images"] == n and info["visible_images"] == 8
    files = sorted((ref / "thz").glob("*/*/*.png"))
    assert len(files) == n
    m = NAME_RE.match(files[0].stem)
    assert m and m["c1"] == m["c2"] and files[0].parts[-3] == m["id"] == "000"
    import csv
    with (ref / "data" / "test_dataset.csv").open() as fh:
        recs = list(csv.DictReader(fh))
    assert len(recs) <= 4  # one concealed test capture per identity and posture (where its face was found)
    for r in recs:
        a, p, n = (NAME_RE.match(Path(r[c]).stem) for c in ("anchor", "positive", "negative"))
        assert a["c1"] == "b" and p["c1"] == "n" and n["c1"] == "n"
        assert a["id"] == p["id"] != n["id"] and a["k"] == p["k"] == n["k"]
        assert (ref / "visible" / r["visible_concealed"]).is_file()
        assert (ref / "visible" / r["visible_negative"]).parts[-3] == n["id"]
        # the paths resolve from thz/, the folder the README tells the authors' trainer to start in
        assert all((ref / "thz" / r[c]).is_file() for c in ("anchor", "positive", "negative"))
    readme = (ref / "README.txt").read_text()
    assert f"cd {ref / 'thz'}" in readme and "No such file or directory" in readme
    back = tmp_path / "imported"
    imp = import_reference(ref / "thz", back, ref / "visible", ref / "data", seed=0)
    # images in a triplet CSV take its split; the rest (no face found for a partner) the seeded rule
    assert 0 < imp["split_from_csv"] <= n and imp["mixed_split_captures"] == 0
    key = lambda r: (r.identity, r.posture, r.concealed, r.modality, r.capture, r.split)  # noqa: E731
    orig, new = read_manifest(out), read_manifest(back)
    # where a capture is missing (no face found) the seeded rule runs over the captures present, so
    # the split is compared where every capture of an identity and posture made it
    full = {k for k, v in Counter((r.identity, r.posture) for r in orig if r.modality == "thz").items()
            if v == 2 * PLAN.captures}
    nosplit = lambda r: key(r)[:-1]  # noqa: E731
    assert sorted(map(nosplit, orig)) == sorted(map(nosplit, new))
    assert sorted(key(r) for r in orig if (r.identity, r.posture) in full or r.modality == "visible") == sorted(
        key(r) for r in new if (r.identity, r.posture) in full or r.modality == "visible")
    # pixels: the export is the 16-bit ROI rounded to 8 bits
    o = {key(r): r for r in orig}
    for r in new[:5]:
        with Image.open(out / o[key(r)].path) as a16, Image.open(back / r.path) as a8:
            np.testing.assert_array_equal(np.rint(np.asarray(a16, np.float64) / 257).astype(np.uint8),
                                          np.asarray(a8))
    # without CSVs the seeded rule gives the very same splits
    again = import_reference(ref / "thz", tmp_path / "imported2", ref / "visible", None, seed=0)
    assert again["split_from_csv"] == 0
    again_rows = read_manifest(tmp_path / "imported2")
    assert sorted(key(r) for r in again_rows if (r.identity, r.posture) in full or r.modality == "visible") == sorted(
        key(r) for r in orig if (r.identity, r.posture) in full or r.modality == "visible")
    # the command-line form
    from thz.commands.dataset import import_reference_cmd
    res = CliRunner().invoke(import_reference_cmd, ["--thz", str(ref / "thz"), "--csv-dir", str(ref / "data"),
                                                    "--out", str(tmp_path / "imported3")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["thz_images"] == n


def test_import_rejects_bad_names(tmp_path):
    from thzcore.manifest import ManifestError
    bad = tmp_path / "thz" / "007" / "u"
    bad.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(bad / "007_b1n_0.png")
    with pytest.raises(ManifestError, match="concealment letters"):
        import_reference(tmp_path / "thz", tmp_path / "o")
    (bad / "007_b1n_0.png").rename(bad / "008_b1b_0.png")
    with pytest.raises(ManifestError, match="differs from its folder"):
        import_reference(tmp_path / "thz", tmp_path / "o")


@pytest.mark.slow
def test_killed_run_continues(tmp_path):
    """A real SIGKILL mid-run, then the same command finishes the dataset."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "thz.cli", "sim", "dataset", "--out", str(out), "--small", "--identities", "2",
           "--captures", "2", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list(out.glob("thz/*/*/*.json"))) < 6:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(list(out.glob("thz/*/*/*.json")))
    assert 6 <= done_before < 40
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["thz_images"] + last["no_face"] == 40 and last["skipped_done"] >= done_before
    assert len(read_manifest(out)) == last["thz_images"] + 20   # + the visible images


def test_a_build_resumed_by_other_code_says_so_and_other_settings_are_refused(tmp_path):
    """dataset.json lists every run that made images; a grow by the same code is one run, one by other code (its
    recorded code hash changed here, as a `git pull` between the two runs would) sets mixed_code and keeps both
    entries; a resume whose image settings differ is refused, one that changes only transport settings is not."""
    plan2 = DatasetPlan(n_identities=2, captures=2, postures=POST[:1])
    plan3 = DatasetPlan(n_identities=3, captures=2, postures=POST[:1])
    same, other = tmp_path / "same", tmp_path / "other"
    for out in (same, other):
        first = make_dataset(out, plan2, Settings(), workers=0, progress=False)
        assert [r["made"] for r in first.runs] == [12] and not first.mixed_code
        assert first.runs[0]["code_sha256_16"] == first.code_sha256_16 and first.runs[0]["libraries"]["numpy"]
    g = make_dataset(same, plan3, Settings(), workers=0, progress=False)
    assert [r["made"] for r in g.runs] == [18] and not g.mixed_code
    info = json.loads((other / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**info, "code_sha256_16": "0" * 16, "runs": []}))
    m = make_dataset(other, plan3, Settings(), workers=0, progress=False)
    assert m.mixed_code and [(r["code_sha256_16"], r["made"]) for r in m.runs] == [("0" * 16, 12),
                                                                                   (m.code_sha256_16, 6)]
    assert json.loads((other / "dataset.json").read_text())["mixed_code"] is True
    assert m.content_sha256_16 == g.content_sha256_16  # this code did not change the bytes: the record says it may
    gated = Settings().model_copy(update={"processing": Settings().processing.model_copy(update={"gate_max_m": 6.3})})
    with pytest.raises(ValueError, match=r"other settings \(processing\.gate_max_m\)"):
        make_dataset(same, plan3, gated, workers=0, progress=False)
    moved = Settings().model_copy(update={"processing": Settings().processing.model_copy(
        update={"publish_endpoint": "tcp://127.0.0.1:6001"})})
    assert make_dataset(same, plan3, moved, workers=0, progress=False).runs == g.runs  # nothing made, same record

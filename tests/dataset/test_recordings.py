"""`thz dataset from-recordings`: recordings of the virtual scanner + a label sheet -> a dataset training reads."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataset.recordings import (LabelSheetError, build_from_recordings, frame_labels, plan_from_recordings,
                                split_of)
from dataset.synth import DatasetPlan
from pipeline.settings import Settings
from thz.cli import EXIT_INPUT, EXIT_OK, EXIT_USAGE, cli
from thzcore.manifest import read_manifest
from thzcore.recording import RecordingError, write_recording

REPO = Path(__file__).resolve().parents[2]
IDS = (0, 2)      # identities whose glints the locator finds in these seeds' captures
CAPTURES = 3          # captures per recording, 3 frames each (frame ids 3k .. 3k+2)
POSTURE = "front-center"


def _record(path: Path, identity: int, concealed: bool, settings: Settings, seed: int) -> Path:
    """One session of the virtual scanner: the subject sits down anew (capture_seed) every 3 frames; each frame
    keeps the simulator's truth in its meta, as `thz acquire --sim --identity` records it."""
    from sim.scanner import VirtualScanner
    from sim.scene import Subject
    vs = VirtualScanner(settings.scanner, settings.sim, seed=seed)
    frames = []
    for k in range(CAPTURES):
        vs.set_scene(Subject(identity=identity, posture=POSTURE, concealed=concealed, capture_seed=100 * seed + k))
        for j in range(3):
            f = vs.acquire_frame(3 * k + j)
            f.frame_id, f.scanner_id = 3 * k + j, settings.scanner.scanner_id
            f.meta["truth"] = vs.truth()
            frames.append(f)
    return write_recording(path, frames, {"config_json": settings.model_dump_json(), "session_id": path.stem})


@pytest.fixture(scope="module")
def recs(tmp_path_factory) -> dict[tuple[int, bool], Path]:
    d = tmp_path_factory.mktemp("recs")
    s = Settings()
    return {(i, c): _record(d / f"id{i}_{'b' if c else 'n'}.h5", i, c, s, seed=10 + 2 * i + int(c))
            for i in IDS for c in (True, False)}


def _sheet(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["recording", "frames", "identity", "posture", "concealed", "capture"])
        w.writerows(rows)
    return path


def _full_sheet(recs: dict, path: Path) -> Path:
    """Every capture of every recording, labelled in full; recordings named relative to the sheet."""
    rows = []
    for (i, c), p in recs.items():
        for k in range(CAPTURES):
            rows.append([p.name, f"{3 * k}-{3 * k + 2}", i, POSTURE, int(c), k])
    return _sheet(path, rows)


@pytest.fixture(scope="module")
def built(recs, tmp_path_factory):
    sheet = _full_sheet(recs, next(iter(recs.values())).parent / "labels.csv")
    out = tmp_path_factory.mktemp("ds") / "lab"
    s = Settings()
    plan = plan_from_recordings([], sheet, s, seed=0)
    summary = build_from_recordings(out, plan, s, progress=False)
    return out, summary, plan, sheet


def test_rows_images_manifest_and_provenance(built, recs):
    out, summary, plan, sheet = built
    assert summary.label_rows == len(IDS) * 2 * CAPTURES == len(plan.rows)
    # one image per capture (3 frames, block average); a capture whose glints are too weak is left out, counted
    assert summary.thz_images + summary.no_face == summary.label_rows
    assert summary.thz_images >= summary.label_rows - 2
    rows = read_manifest(out)
    assert len(rows) == summary.thz_images and {r.modality for r in rows} == {"thz"}
    assert {(r.identity, r.posture) for r in rows} <= {(i, POSTURE) for i in IDS}
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["source"] == "recordings" and doc["labels"]["path"] == str(sheet)
    import hashlib
    assert doc["labels"]["sha256"] == hashlib.sha256(sheet.read_bytes()).hexdigest()
    by_path = {Path(r["path"]).name: r for r in doc["recordings"]}
    assert set(by_path) == {p.name for p in recs.values()}
    for p in recs.values():
        assert by_path[p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert by_path[p.name]["frames"] == 3 * CAPTURES and by_path[p.name]["scanner_config_from"] == "recording"
    imgs = [m for m in doc["images"] if m["found"]]
    assert len(imgs) == summary.thz_images and all(len(m["frame_ids"]) == 3 for m in imgs)
    assert (out / "contact_sheet.png").is_file() and not (out / ".from-recordings").exists()


def test_the_split_is_the_synthetic_rule_and_captures_never_span_two(built):
    out, _, plan, _ = built
    synth = DatasetPlan(n_identities=10, captures=CAPTURES, seed=0)
    for r in plan.rows:
        assert r.split == synth.split_of(r.identity, r.posture, r.capture)
    assert Counter(r.split for r in plan.rows) == {"test": 4, "val": 4, "train": 4}
    spans: dict = {}
    for r in read_manifest(out):
        spans.setdefault((r.identity, r.posture, r.capture), set()).add(r.split)
    assert all(len(v) == 1 for v in spans.values())
    assert split_of(0, POSTURE, 5, [5], 0) == "train"  # one capture: train
    assert split_of(0, POSTURE, 12, [3, 12], 0) == DatasetPlan(captures=2).split_of(0, POSTURE, 1)  # by rank


def test_training_reads_it_and_one_epoch_runs(built, tmp_path):
    """`thz train --epochs 1` on the dataset made from recordings (Model A, the compact preset)."""
    out, summary, _, _ = built
    from training.data import ThzData
    data = ThzData.load(out, 1)
    assert len(data) == summary.thz_images
    assert data.provenance()["plan"]["source"] == "recordings"
    assert len({(r.identity, r.concealed) for r in read_manifest(out) if r.split == "train"}) == 4
    r = CliRunner().invoke(cli, ["train", "--model", "a", "--data", str(out), "--out", str(tmp_path / "run"),
                                 "--epochs", "1"])
    assert r.exit_code == EXIT_OK, r.output[-2000:]


def test_blank_labels_come_from_the_frames_meta(recs, tmp_path):
    (i, c), p = next(iter(recs.items()))
    sheet = _sheet(tmp_path / "l.csv", [[str(p), "0-2", "", "", "", ""], [str(p), "3-5", "", "", "", 4]])
    plan = plan_from_recordings([], sheet, Settings())
    assert [(r.identity, r.posture, r.concealed, r.capture, r.labels_from) for r in plan.rows] == \
        [(i, POSTURE, c, 0, "meta"), (i, POSTURE, c, 4, "meta")]
    # no sheet at all: a recording is one row over its frames, labelled by its meta
    plan = plan_from_recordings([p], None, Settings())
    assert len(plan.rows) == 1 and (plan.rows[0].first, plan.rows[0].last, plan.rows[0].identity) == (0, 8, i)
    assert frame_labels({"truth": {"scene": {"identity": 2, "posture": "full-left", "concealed": True}}}) == \
        {"identity": 2, "posture": "full-left", "concealed": True}


@pytest.mark.parametrize("cells, needle", [
    (["nowhere.h5", "0-2", 1, POSTURE, 1, 0], "recording 'nowhere.h5' not found"),
    (["{rec}", "3-11", 1, POSTURE, 1, 0], "frames 3-11 of id0_b.h5: 9-11 not in the recording (it holds frame ids 0-8)"),
    (["{rec}", "0-1", 1, POSTURE, 1, 0], "hold 2 frame(s); an image averages 3"),
    (["{rec}", "2-0", 1, POSTURE, 1, 0], "need 0 <= first <= last"),
    (["{rec}", "a-b", 1, POSTURE, 1, 0], "write frame ids as A-B"),
    (["{rec}", "0-2", 1, "sideways", 1, 0], "posture 'sideways' is not one of"),
    (["{rec}", "0-2", 1, POSTURE, "maybe", 0], "concealed 'maybe'"),
    (["{rec}", "0-2", -1, POSTURE, 1, 0], "identity -1 must be >= 0"),
])
def test_label_sheet_errors_name_the_line(recs, tmp_path, cells, needle):
    rec = recs[(IDS[0], True)]
    sheet = _sheet(tmp_path / "l.csv", [[str(rec), "6-8", 1, POSTURE, 1, 0],
                                        [str(c).replace("{rec}", str(rec)) for c in cells]])
    with pytest.raises((LabelSheetError, RecordingError)) as ei:
        plan_from_recordings([], sheet, Settings())
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg, msg
    if "not found" not in needle:
        assert msg.startswith("l.csv:3: ")


def test_frames_labelled_twice_and_meta_that_is_missing(recs, tmp_path):
    rec = recs[(IDS[0], True)]
    sheet = _sheet(tmp_path / "l.csv", [[str(rec), "0-5", 1, POSTURE, 1, 0], [str(rec), "3-8", 1, POSTURE, 1, 1]])
    with pytest.raises(LabelSheetError, match=r"l.csv:3: frames 3-5 of id0_b.h5 are labelled twice \(also by l.csv:2\)"):
        plan_from_recordings([], sheet, Settings())
    # a recording whose frames carry no labels of their own (real hardware) needs the sheet's
    from thzcore.recording import iter_frames
    frames = list(iter_frames(rec, 0, 3))
    for f in frames:
        f.meta = {}
    bare = write_recording(tmp_path / "bare.h5", frames)
    with pytest.raises(LabelSheetError, match="identity is not given and the frames 0-2 of bare.h5 carry none"):
        plan_from_recordings([bare], None, Settings())
    sheet = _sheet(tmp_path / "l2.csv", [["other.h5", "", 1, POSTURE, 1, 0]])
    with pytest.raises(LabelSheetError, match="'other.h5' is not among the recordings given"):
        plan_from_recordings([bare], sheet, Settings())


def test_cli_errors_and_the_out_folder(recs, tmp_path):
    rec = recs[(IDS[0], True)]
    r = CliRunner().invoke(cli, ["dataset", "from-recordings", "--out", str(tmp_path / "o")])
    assert r.exit_code == EXIT_USAGE and "nothing to read" in r.stderr
    r = CliRunner().invoke(cli, ["dataset", "from-recordings", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o")])
    assert r.exit_code == EXIT_INPUT and "does not exist" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    r = CliRunner().invoke(cli, ["dataset", "from-recordings", str(rec), "--out", str(tmp_path / "full"),
                                 "--no-progress"])
    assert r.exit_code == EXIT_USAGE and "is not empty" in r.stderr
    r = CliRunner().invoke(cli, ["dataset", "from-recordings", str(rec), "--out", str(tmp_path / "full"),
                                 "--no-progress", "--overwrite"])
    assert r.exit_code == EXIT_USAGE and "holds something other" in r.stderr
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"


def test_the_calibration_record_a_recording_names_is_applied_or_refused(recs, tmp_path):
    """A recording processed live with a calibration record is processed with it again; one the store lacks is an
    input error that says how to go on (--store, --uncalibrated)."""
    from thzcore.recording import iter_frames
    frames = list(iter_frames(recs[(IDS[0], True)], 0, 3))
    rec = write_recording(tmp_path / "cal.h5", frames, {"calibration_id": "phase-20260101T000000Z-0123abcd"})
    argv = ["dataset", "from-recordings", str(rec), "--out", str(tmp_path / "o"), "--no-progress",
            "--store", str(tmp_path / "store")]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == EXIT_INPUT, r.output
    assert "phase-20260101T000000Z-0123abcd not found" in r.stderr and "--uncalibrated" in r.stderr
    r = CliRunner().invoke(cli, [*argv, "--uncalibrated"])
    assert r.exit_code == EXIT_OK, r.output
    doc = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert doc["rows"][0]["calibration_id"] == "phase-20260101T000000Z-0123abcd" and not doc["rows"][0]["calibrated"]


@pytest.mark.integration
def test_from_a_recording_made_by_thz_acquire(tmp_path):
    """`thz acquire --sim --identity` records a subject; its frames' truth labels the dataset with no sheet."""
    env = {**__import__("os").environ, "THZ_LOG_LEVEL": "WARNING"}
    env.pop("THZ_CONFIG", None)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[acquisition]\nraw_endpoint = "tcp://127.0.0.1:*"\nstatus_endpoint = "tcp://127.0.0.1:*"\n')
    thz = [sys.executable, "-m", "thz.cli", "--config", str(cfg)]
    p = subprocess.run([*thz, "acquire", "--sim", "--fast", "--frames", "6", "--identity", "0", "--posture",
                        "front-center", "--concealed", "--no-publish", "--out", str(tmp_path / "rec")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads(p.stdout.strip().splitlines()[-1])["recording"]
    p = subprocess.run([*thz, "dataset", "from-recordings", rec, "--out", str(tmp_path / "ds"), "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["label_rows"] == 1 and out["thz_images"] >= 1 and out["frames_processed"] == 6
    assert {(r.identity, r.posture, r.concealed) for r in read_manifest(tmp_path / "ds")} == {(0, POSTURE, True)}
    assert doc["rows"][0]["labels_from"] == "meta" and doc["recordings"][0]["sim_seed"] >= 0
    assert all(m["path"].startswith("thz/id000/front-center/concealed_c0_") for m in doc["images"] if m["found"])

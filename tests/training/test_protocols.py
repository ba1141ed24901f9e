"""`thz evaluate --protocol`: each protocol accepted on the data it fits and refused, with the fix named, elsewhere."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from training.protocols import (ProtocolError, check_fit_data, dataset_seeds, infer_protocol, resolve,
                                training_provenance)

TRAINING = {"path": "data/v3", "content_sha256_16": "aaaa", "plan": {"seed": 0, "population_seed": 1234,
                                                                    "n_identities": 4}}


def _built(root: Path, seed: int, population_seed: int, n: int = 4, content: str = "bbbb") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"plan": {"seed": seed, "population_seed": population_seed,
                                                            "n_identities": n}, "content_sha256_16": content}))
    return root


IDS = np.arange(4)


def test_paper_needs_the_training_data_itself(tmp_path):
    p = resolve("paper", _built(tmp_path / "same", 0, 1234, content="aaaa"), IDS, TRAINING, [], "m")
    assert p.splits == ("test",) and p.identities is None and p.notes == []
    rebuilt = resolve("paper", _built(tmp_path / "rebuilt", 0, 1234), IDS, TRAINING, [], "m")
    assert "rebuilt" in rebuilt.notes[0]     # same seeds, other bytes: evaluated, and said so
    with pytest.raises(ProtocolError, match="use --protocol heldout"):
        resolve("paper", _built(tmp_path / "caps", 7, 1234), IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="use --protocol openset"):
        resolve("paper", _built(tmp_path / "new", 7, 99), IDS, TRAINING, [], "m")


def test_heldout_needs_the_training_people_and_a_new_capture_seed(tmp_path):
    p = resolve("heldout", _built(tmp_path / "h", 90731, 1234, n=6), np.arange(6), TRAINING, [3], "m")
    assert p.splits == ("train", "val", "test") and p.identities == [0, 1, 2]   # trained: 0-3 minus held-out 3
    assert "restricted to the 3 trained identities" in p.notes[0]
    with pytest.raises(ProtocolError, match=r"--seed S` \(S != 0\)"):
        resolve("heldout", _built(tmp_path / "same", 0, 1234), IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="that is --protocol openset"):
        resolve("heldout", _built(tmp_path / "other", 5, 77), IDS, TRAINING, [], "m")


def test_openset_needs_new_people_and_new_captures(tmp_path):
    p = resolve("openset", _built(tmp_path / "o", 778, 777), IDS, TRAINING, [], "m")
    assert p.splits == ("train", "val", "test") and p.identities is None
    assert p.to_json()["evaluated"]["population_seed"] == 777 and p.to_json()["training"]["seed"] == 0
    with pytest.raises(ProtocolError, match="training population seed 1234.*--population-seed P"):
        resolve("openset", _built(tmp_path / "pop", 778, 1234), IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="new captures too.*S != 0"):
        resolve("openset", _built(tmp_path / "seed", 0, 777), IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="fewer than 2 identities"):
        resolve("openset", tmp_path / "o", np.array([0]), TRAINING, [], "m")


def test_unknown_seeds_are_refused_not_guessed(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    with pytest.raises(ProtocolError, match="records no seeds"):
        resolve("openset", lab, IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="does not record the seeds"):
        resolve("openset", _built(tmp_path / "o", 778, 777), IDS, {"path": "x"}, [], "bundle B")
    # plan.json alone (a build still running) tells the seeds too
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "plan.json").write_text(json.dumps({"seed": 3, "population_seed": 4, "n_identities": 2}))
    assert (dataset_seeds(tmp_path / "plan").seed, dataset_seeds(tmp_path / "plan").population_seed) == (3, 4)


def test_training_provenance_of_bundles_old_and_new():
    new = SimpleNamespace(training_config={"dataset": TRAINING}, dataset={"plan": {"seed": 5}})
    assert training_provenance("bundle", "b", new) is TRAINING
    legacy = SimpleNamespace(training_config={}, dataset=TRAINING)   # exported with its own training data
    assert training_provenance("bundle", "b", legacy) is TRAINING
    other = SimpleNamespace(training_config={}, dataset=TRAINING | {"training_content_sha256_16": "cccc"})
    assert training_provenance("bundle", "b", other) is None          # exported on other data: unknown


def test_fit_data_must_not_be_the_evaluated_people(tmp_path):
    plan = resolve("openset", _built(tmp_path / "o", 778, 777), IDS, TRAINING, [], "m")
    with pytest.raises(ProtocolError, match="give --fit-data DIR, the model's training data"):
        check_fit_data(plan, None)
    with pytest.raises(ProtocolError, match="holds the evaluated people"):
        check_fit_data(plan, _built(tmp_path / "o2", 1, 777))
    assert check_fit_data(plan, _built(tmp_path / "train", 0, 1234)) == []
    assert "not on the model's training data" in check_fit_data(plan, _built(tmp_path / "else", 9, 55))[0]


def test_infer_protocol_names_a_plain_split(tmp_path):
    assert infer_protocol("test", _built(tmp_path / "a", 0, 1234), TRAINING) == "paper"
    assert infer_protocol("all", _built(tmp_path / "b", 5, 1234), TRAINING) == "heldout"
    assert infer_protocol("all", _built(tmp_path / "c", 5, 9), TRAINING) == "openset"
    assert infer_protocol("val", tmp_path / "a", TRAINING) is None


# ---- through the command --------------------------------------------------------------------------------

def _with_seeds(src: Path, dst: Path, seed: int, population_seed: int) -> Path:
    shutil.copytree(src, dst)
    return _built(dst, seed, population_seed, n=6)


def test_cli_protocols_and_exit_code(dataset, tmp_path):
    from tests.training.conftest import small_config
    from thz.cli import EXIT_USAGE, cli
    from training.data import ThzData
    from training.trainer import Trainer
    train_dir = _with_seeds(dataset, tmp_path / "train", 0, 1234)
    t = Trainer(ThzData.load(train_dir), "a", small_config(), tmp_path / "run", progress=False)
    t.out.mkdir(parents=True)
    t.save(t.out / "best.pt", full=False)
    (t.out / "config.json").write_text(json.dumps({"dataset": ThzData.load(train_dir).provenance()}))
    open_dir = _with_seeds(dataset, tmp_path / "open", 778, 777)
    run = lambda *a: CliRunner().invoke(cli, ["evaluate", str(t.out), *a, "--no-progress"])  # noqa: E731
    res = run("--data", str(open_dir), "--protocol", "openset", "--fusion", "1,2", "--baselines", "--fit-data",
              str(train_dir), "--out", str(tmp_path / "ev"))
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["protocol"]["protocol"] == "openset" and m["n_images"] == 6 * 5 * 2 * 4   # every image
    assert set(m["fusion"]) == {"1", "2"} and set(m["baselines"]["verification"]["ssim"]["fusion"]) == {"1", "2"}
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "protocol **openset**" in report and "Multi-scan fusion" in report and "| Fisherfaces" in report
    # the training population evaluated as open set: refused, exit 2, the fix named
    res = run("--data", str(train_dir), "--protocol", "openset", "--out", str(tmp_path / "bad"))
    assert res.exit_code == EXIT_USAGE and "--population-seed" in res.output
    res = run("--data", str(train_dir), "--protocol", "paper", "--split", "test")
    assert res.exit_code == 2 and "not both" in res.output
    # a plain --split test on the training data is the paper's protocol, and the report says so
    res = run("--data", str(train_dir), "--out", str(tmp_path / "plain"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["protocol"] == "paper"
    assert "named from the seeds" in (tmp_path / "plain" / "report.md").read_text()

"""One exit-code policy (README "Exit codes"): a table of every command against the code it must end with."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.inference.conftest import bundle_dir  # noqa: F401 - the tiny bundle, exported once per session
from thz.cli import (COMMANDS, EXIT_DEVICE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NEGATIVE, EXIT_OK,
                     EXIT_REFUSED, EXIT_USAGE, SIM_COMMANDS, ThzError, cli, hoist_global_options)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory, bundle_dir):  # noqa: F811
    """A bundle, a gallery with alice enrolled from roi_a.png, two ROIs, a bad config, an empty folder."""
    from inference.bundle import load_bundle
    from inference.gallery import Gallery
    from inference.sources import save_png_roi

    d = tmp_path_factory.mktemp("exit-codes")
    rng = np.random.default_rng(3)
    a, b = (str(save_png_roi(d / f"roi_{n}.png", rng.random((64, 64)))) for n in "ab")
    bun = load_bundle(bundle_dir)
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from inference.sources import load_png_roi
    eng = OnnxRuntimeEngine(bun, intra_op_threads=1)
    e = eng.infer(load_png_roi(a)[None])["embedding"][0]
    g = d / "gallery.sqlite"
    with Gallery(g, bun.model_id, bun.manifest.embedding_size) as gal:
        gal.enroll("alice", e, "front-center")
    empty_g = d / "empty.sqlite"
    Gallery(empty_g, bun.model_id, bun.manifest.embedding_size).close()
    bad = d / "bad.toml"
    bad.write_text("[acquisition]\nbogus = 1\n")
    (d / "empty").mkdir()
    (d / "hw.toml").write_text('[acquisition]\ngalvo_port = "/dev/ttyUSB-thz-absent"\n')
    poor = save_png_roi(d / "poor.png", rng.random((64, 64)))
    poor.with_suffix(".json").write_text('{"roi": {"found": true, "quality": 0.1}}')   # the face locator's score
    sheet = d / "sheet.png"
    Image.fromarray((rng.random((145, 209, 3)) * 255).astype(np.uint8)).save(sheet)
    return {"dir": d, "bundle": str(bundle_dir), "g": str(g), "empty_g": str(empty_g), "a": a, "b": b,
            "bad": str(bad), "empty": str(d / "empty"), "sheet": str(sheet), "poor": str(poor), "hw": str(d / "hw.toml")}


def _cases(f: dict) -> list[tuple[str, list[str], int, str]]:
    src = ["--bundle", f["bundle"], "--gallery", f["g"]]
    d = f["dir"]
    return [
        # config: the same bad file is a usage error however it is given
        ("config validate: bad file", ["config", "validate", f["bad"]], EXIT_USAGE, "acquisition.bogus"),
        ("--config bad: config show", ["--config", f["bad"], "config", "show"], EXIT_USAGE, "acquisition.bogus"),
        ("--config bad after the subcommand", ["run", "--sim", "--config", f["bad"]], EXIT_USAGE, "acquisition.bogus"),
        ("--config bad: a command that reads no setting", ["recover", f["bad"], "--config", f["bad"]], EXIT_USAGE,
         "acquisition.bogus"),
        ("config show", ["config", "show", "--no-derived"], EXIT_OK, ""),
        # gallery decisions
        ("enroll: a contact sheet", ["enroll", "--subject", "bob", "--image", f["sheet"], *src], EXIT_INPUT,
         "not square"),
        ("enroll: every ROI below the quality gate", ["enroll", "--subject", "bob", "--image", f["poor"], *src],
         EXIT_REFUSED, "below inference.enroll_min_quality"),
        ("enroll: no source", ["enroll", "--subject", "bob", *src], EXIT_USAGE, "exactly one source"),
        ("verify: accepted", ["verify", "--claim", "alice", "--image", f["a"], *src], EXIT_OK, ""),
        ("verify: rejected", ["verify", "--claim", "alice", "--threshold", "1e-9", "--image", f["b"], *src],
         EXIT_NEGATIVE, ""),
        ("verify: claim not enrolled", ["verify", "--claim", "bob", "--image", f["a"], *src], EXIT_USAGE,
         "'bob' is not enrolled"),
        ("verify: gallery not a database", ["verify", "--claim", "alice", "--image", f["a"], "--bundle", f["bundle"],
                                            "--gallery", f["bad"]], EXIT_INPUT, "not a readable gallery"),
        ("identify: identified", ["identify", "--image", f["a"], *src], EXIT_OK, ""),
        ("identify: rejected as unknown", ["identify", "--threshold", "1e-9", "--image", f["b"], *src],
         EXIT_NEGATIVE, ""),
        ("identify: empty gallery", ["identify", "--image", f["a"], "--bundle", f["bundle"], "--gallery",
                                     f["empty_g"]], EXIT_USAGE, "no subject is enrolled"),
        ("gallery list: no gallery", ["gallery", "list", "--bundle", f["bundle"], "--gallery", str(d / "none.sqlite")],
         EXIT_INPUT, "no gallery at"),
        ("gallery remove: not enrolled", ["gallery", "remove", "bob", "--yes", *src], EXIT_USAGE,
         "'bob' is not enrolled"),
        ("gallery audit", ["gallery", "audit", *src], EXIT_OK, ""),
        # the main job
        ("run --sim --subjects 1", ["run", "--sim", "--subjects", "1", "--bundle", f["bundle"]], EXIT_USAGE,
         "need at least 2"),
        ("run: missing bundle", ["run", "--sim", "--bundle", str(d / "nobundle")], EXIT_INPUT, "--bundle"),
        # calibration
        ("calibrate status: nothing recorded", ["calibrate", "status"], EXIT_NEGATIVE, ""),
        ("calibrate: --direct without --sim", ["calibrate", "beam", "--direct"], EXIT_USAGE, "needs --sim"),
        ("calibrate: --raw-source direct without --sim", ["calibrate", "beam", "--raw-source", "direct"], EXIT_USAGE,
         "needs --sim"),
        # acquisition
        ("acquire --identity without --sim", ["acquire", "--identity", "1", "--frames", "1"], EXIT_USAGE,
         "needs --sim"),
        ("recover: not HDF5", ["recover", f["bad"]], EXIT_INPUT, ""),
        ("acquire: galvo port missing", ["acquire", "--frames", "1", "--no-publish", "--config", f["hw"], "--out",
                                         str(d / "rec")], EXIT_DEVICE, ""),
        ("calibrate snr: galvo port missing", ["calibrate", "snr", "--config", f["hw"], "--store", str(d / "st")],
         EXIT_DEVICE, "does not exist"),
        # training and evaluation
        ("train: no manifest", ["train", "--model", "a", "--data", f["empty"], "--out", str(d / "run")], EXIT_INPUT,
         "manifest.csv"),
        ("evaluate: neither run nor bundle", ["evaluate", f["empty"], "--data", f["empty"]], EXIT_INPUT, "neither"),
        ("baselines: no manifest", ["baselines", "--data", f["empty"], "--out", str(d / "b")], EXIT_INPUT,
         "manifest.csv"),
        ("export: not a run", ["export", f["empty"], "--out", str(d / "x")], EXIT_INPUT, ""),
        # the virtual scanner and datasets
        ("sim dataset: bad posture", ["sim", "dataset", "--out", str(d / "ds"), "--postures", "bogus"], EXIT_USAGE,
         "bogus"),
        ("sim import-reference: no images", ["sim", "import-reference", "--thz", f["empty"], "--out",
                                             str(d / "imp")], EXIT_INPUT, "no <id>/<unit>"),
        ("dataset from-recordings: no label sheet", ["dataset", "from-recordings", "--labels", str(d / "none.csv"),
                                                     "--out", str(d / "dsr")], EXIT_INPUT, "does not exist"),
        ("sim scanner: bad JSON", ["sim", "scanner", "--scanner-json", "{"], EXIT_USAGE, "--scanner-json"),
        ("sim demo: no --out", ["sim", "demo"], EXIT_USAGE, "--out"),
        # benches
        ("bench inference: missing bundle", ["bench", "inference", "--bundle", f["empty"]], EXIT_INPUT, "bundle"),
        ("bench pipeline: missing bundle", ["bench", "pipeline", "--bundle", f["empty"]], EXIT_INPUT, "bundle"),
        ("bench parity: missing bundle", ["bench", "parity", "--bundle", f["empty"]], EXIT_INPUT, "bundle"),
        ("bench sim: bad baseline tree", ["bench", "sim", "--baseline", f["empty"]], EXIT_USAGE, "not a thz-face tree"),
        ("bench processing: unknown option", ["bench", "processing", "--bogus"], EXIT_USAGE, "--bogus"),
        ("schema: unknown topic", ["schema", "--topic", "bogus"], EXIT_USAGE, "bogus"),
        ("schema", ["schema", "--topic", "raw"], EXIT_OK, ""),
    ]


def _placeholders() -> dict:
    return {k: "x" for k in ("bundle", "g", "empty_g", "a", "b", "bad", "empty", "sheet", "poor", "hw")} | {"dir": Path("x")}


_NAMES = [c[0] for c in _cases(_placeholders())]


@pytest.mark.parametrize("name", _NAMES)
def test_every_command_ends_with_its_documented_code(files, name, monkeypatch):
    monkeypatch.delenv("THZ_DEBUG", raising=False)
    monkeypatch.delenv("THZ_CONFIG", raising=False)
    _, argv, code, needle = next(c for c in _cases(files) if c[0] == name)
    r = CliRunner().invoke(cli, argv)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, f"{name}: exit {r.exit_code}, expected {code}: {r.output[-800:]}"
    assert "Traceback" not in r.output
    if code not in (EXIT_OK, EXIT_NEGATIVE):
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1 and needle in errors[0], r.stderr[-800:]


def test_the_table_covers_every_command():
    covered = set()
    for _, argv, _, _ in _cases(_placeholders()):
        words = [a for a in argv if not a.startswith("-") and a != "x"]
        covered.add(words[1] if words[0] in ("sim", "bench", "dataset") else words[0])
    from thz.cli import BENCHES, DATASET_COMMANDS
    missing = (set(COMMANDS) | set(SIM_COMMANDS) | set(BENCHES) | set(DATASET_COMMANDS) | {"config"}) - covered
    assert not missing, f"commands without an exit-code case: {sorted(missing)}"


def test_ctrl_c_is_130_with_the_commands_message(monkeypatch):
    import thz.commands.run as run_cmd

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt("interrupted: 12 of 40 images kept; run it again to continue")
    monkeypatch.setattr(run_cmd, "_scan", interrupted)
    r = CliRunner().invoke(cli, ["identify", "--image", "x.png"])
    assert r.exit_code == EXIT_INTERRUPTED and "12 of 40 images kept" in r.stderr


@pytest.mark.parametrize("cause, code, needle", [
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted at a prompt"),
    (EOFError(), EXIT_USAGE, "stdin is closed"),
    (None, EXIT_NEGATIVE, "not confirmed"),
])
def test_a_prompt_without_an_answer(cause, code, needle):
    @cli.command("_prompt_probe", hidden=True)
    def probe():
        try:
            if cause is not None:
                raise cause
            raise click.exceptions.Abort()
        except (KeyboardInterrupt, EOFError):
            raise click.exceptions.Abort() from None
    try:
        r = CliRunner().invoke(cli, ["_prompt_probe"])
    finally:
        cli.commands.pop("_prompt_probe")
    assert r.exit_code == code and needle in r.stderr, r.output


def test_gallery_remove_with_stdin_closed_is_a_usage_error(files):
    r = CliRunner().invoke(cli, ["gallery", "remove", "alice", "--bundle", files["bundle"], "--gallery", files["g"]],
                           input=None)
    assert r.exit_code == EXIT_USAGE and "stdin is closed" in r.stderr, r.output


def _plain_error(cause: Exception | None):
    if cause is None:
        raise click.ClickException("3 images failed")
    try:
        raise cause
    except Exception as exc:
        raise click.ClickException(str(exc)) from None


@pytest.mark.parametrize("cause, code", [(ValueError("bad plan"), EXIT_USAGE), (None, EXIT_NEGATIVE), ("manifest", EXIT_INPUT)])
def test_a_plain_click_error_is_classified_by_its_cause(cause, code):
    """thz/commands/dataset.py (the Dask builder's) raises click.ClickException from a ValueError / ManifestError."""
    from thzcore.manifest import ManifestError

    cause = ManifestError("bad manifest") if cause == "manifest" else cause

    @cli.command("_plain_probe", hidden=True)
    def probe():
        _plain_error(cause)
    try:
        r = CliRunner().invoke(cli, ["_plain_probe"])
    finally:
        cli.commands.pop("_plain_probe")
    assert r.exit_code == code, (cause, r.output)


def test_global_options_after_the_subcommand():
    assert hoist_global_options(["run", "--sim", "--config", "x.toml"]) == ["--config", "x.toml", "run", "--sim"]
    assert hoist_global_options(["run", "--log-level=DEBUG", "--", "--config", "y"]) == \
        ["--log-level=DEBUG", "run", "--", "--config", "y"]
    assert hoist_global_options(["run", "--config"]) == ["run", "--config"]  # no value: click names the error
    r = CliRunner().invoke(cli, ["config", "show", "--json", "--no-derived", "--log-level", "WARNING"])
    assert r.exit_code == 0 and json.loads(r.stdout)["scanner"]


def test_commands_exit_with_named_codes_only():
    """No bare numbers in sys.exit / SystemExit / exit_code, and no plain click.ClickException (which exits 1)
    in thz/commands; dataset.py is the Dask builder's, and its plain errors are classified by their cause."""
    bad = []
    for p in sorted((REPO / "thz" / "commands").glob("*.py")):
        if p.name == "dataset.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call):
                fn = ast.unparse(node.func)
                if fn in ("sys.exit", "SystemExit", "exit") and node.args and isinstance(node.args[0], ast.Constant):
                    bad.append(f"{p.name}:{node.lineno} {ast.unparse(node)}")
                if fn == "click.ClickException":
                    bad.append(f"{p.name}:{node.lineno} {ast.unparse(node)}")
    assert not bad, bad


def test_the_documented_codes():
    from acquisition import daemon
    assert (daemon.EXIT_OK, daemon.EXIT_CONFIG, daemon.EXIT_FAILED, daemon.EXIT_ERROR, daemon.EXIT_INTERRUPTED) == \
        (EXIT_OK, EXIT_USAGE, EXIT_DEVICE, EXIT_INTERNAL, EXIT_INTERRUPTED)
    readme = (REPO / "README.md").read_text()
    for code in (EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_REFUSED, EXIT_INPUT, EXIT_DEVICE, EXIT_INTERNAL,
                 EXIT_INTERRUPTED):
        assert f"\n| {code} |" in readme
    assert ThzError("a\nb", 4).message == "a; b"


@pytest.mark.parametrize("argv, needle, note", [
    # a number of identities is --n-identities; the old --identities N still means it there (hidden), with a note
    (["sim", "dataset", "--out", "{d}/ds1", "--n-identities", "1"], "n_identities=1", False),
    (["sim", "dataset", "--out", "{d}/ds2", "--identities", "1"], "n_identities=1", True),
    (["sim", "dataset", "--out", "{d}/ds3", "--identities", "3", "--n-identities", "4"], "give --n-identities only",
     False),
    (["bench", "sim", "--identities", "1"], "--identities", False),  # refused by its range before the note
    (["bench", "sim", "--n-identities", "1"], "--n-identities", False),
])
def test_counts_are_n_identities_and_the_old_spelling_still_parses(tmp_path, argv, needle, note):
    r = CliRunner().invoke(cli, [a.replace("{d}", str(tmp_path)) for a in argv])
    assert r.exit_code == EXIT_USAGE and needle in r.stderr, r.output
    assert ("is spelled --n-identities" in r.stderr) == note


def test_identities_is_a_list_wherever_it_is_shown():
    """In every command's help, --identities takes a LIST; counts are --n-identities or --subjects."""
    from thz.cli import BENCHES
    for group, table in (("", COMMANDS), ("sim", SIM_COMMANDS), ("bench", BENCHES)):
        for name in table:
            cmd = cli.get_command(click.Context(cli), group) if group else cli
            sub = cmd.get_command(click.Context(cmd), name)
            for p in getattr(sub, "params", []):
                if "--identities" in getattr(p, "opts", []) and not getattr(p, "hidden", False):
                    assert p.metavar == "LIST" or "LIST" in (p.help or ""), f"{group} {name}: --identities {p.help}"

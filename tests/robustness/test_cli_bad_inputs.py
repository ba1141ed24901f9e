"""Each bad input of issue 13 item 6 through the `thz` CLI: one line, the documented exit code, no traceback."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.robustness.bad_files import cases
from thz.cli import EXIT_INTERNAL, ThzError, _exit_for, cli


@pytest.fixture(scope="module")
def good(tmp_path_factory, bundle_dir):
    from inference.bundle import load_bundle
    from inference.gallery import Gallery

    d = tmp_path_factory.mktemp("good")
    img = d / "roi.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8), mode="L").save(img)
    b = load_bundle(bundle_dir)
    g = d / "gallery.sqlite"
    e = np.random.default_rng(2).standard_normal(b.manifest.embedding_size).astype(np.float32)
    with Gallery(g, b.model_id, b.manifest.embedding_size) as gal:
        gal.enroll("alice", e / np.linalg.norm(e), "front-center")
    return bundle_dir, img, g


@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory, good):
    bundle_dir, img, g = good
    return cases(tmp_path_factory.mktemp("bad"), bundle_dir, img, g)


def _names():
    return [
        "bundle: truncated model.onnx", "bundle: random bytes as model.onnx",
        "bundle: random ONNX, manifest rehashed", "bundle: truncated ONNX, manifest rehashed",
        "bundle: threshold 2.0 with the old hash", "bundle: threshold 0.9 hand-edited (old hash)", "bundle: embedding_size 64 against a 128-d model",
        "bundle: manifest not JSON",
        "bundle: manifest not UTF-8", "bundle: missing directory", "gallery: random bytes", "gallery: truncated",
        "gallery: 2-byte template blob", "gallery: a directory", "gallery list: a directory",
        *[f"recording to {verb}: {what}" for what in ("random bytes", "HDF5 that is not a recording", "48-byte stub")
          for verb in ("enroll", "identify", "recover")],
        "recording to recover: count -5",
        "image: random bytes as PNG", "image: truncated PNG", "image: float TIFF with NaN", "image: 1x1 PNG",
        "image: 12000x12000 PNG", "image: missing file", "config: not UTF-8", "config: nested 100k deep",
        "config validate: not UTF-8", "thz run --result-endpoint on 0.0.0.0",
    ]


@pytest.mark.parametrize("name", _names())
def test_bad_input_gives_one_line_and_its_exit_code(bad_cases, name, matrix, monkeypatch):
    monkeypatch.delenv("THZ_DEBUG", raising=False)
    found = {n: (argv, code) for n, argv, code in bad_cases}
    argv, code = found[name]
    r = CliRunner().invoke(cli, argv)
    out = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert "Traceback" not in out, out
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, f"{name}: exit {r.exit_code}, expected {code}: {out[-600:]}"
    errors = [ln for ln in out.splitlines() if ln.startswith("Error:") or ln.startswith("refused")]
    assert errors or r.exit_code == 2, out
    matrix.record("CLI bad inputs", name, f"exit {r.exit_code}", tracebacks=0)


def test_an_unexpected_exception_is_one_line_with_exit_70():
    code, text = _exit_for(KeyError("boom"))
    assert code == EXIT_INTERNAL and "\n" not in text and "THZ_DEBUG" in text
    assert ThzError("x", 4).exit_code == 4

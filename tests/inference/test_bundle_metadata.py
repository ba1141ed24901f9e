"""ONNX metadata_props of a bundle and its model id: the graph's hash for bundles with metadata, the file's for
those without (the shipped models/compact and every gallery enrolled with it keep their id)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from inference.bundle import BundleError, load_bundle
from inference.gallery import Gallery
from thzcore.bundle import (BUNDLE_FORMAT, ONNX_NAME, BundleManifest, bundle_model_id, graph_model_id,
                            read_manifest, read_onnx_metadata, stamp_metadata, write_manifest)

REPO = Path(__file__).resolve().parents[2]


def _file_hash(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def _with_metadata(old: Path, d: Path) -> Path:
    """A copy of an old-style bundle, exported as `thz export` does now: graph id, metadata stamped."""
    shutil.copytree(old, d)
    m = read_manifest(d).model_copy(update={"model_id": graph_model_id(d / ONNX_NAME)})
    stamp_metadata(d / ONNX_NAME, m)
    write_manifest(d, m)
    return d


@pytest.fixture()
def new_bundle(bundle_dir, tmp_path) -> Path:
    return _with_metadata(bundle_dir, tmp_path / "new")


def test_a_bundle_without_metadata_keeps_its_file_hash_id(bundle_dir, tmp_path):
    onnx_path = bundle_dir / ONNX_NAME
    assert read_onnx_metadata(onnx_path) == {}
    b = load_bundle(bundle_dir)
    assert b.model_id == _file_hash(onnx_path) and bundle_model_id(onnx_path)[1] == "file"
    # a gallery enrolled with it still opens (templates of the same model)
    g = tmp_path / "g.sqlite"
    with Gallery(g, b.model_id, b.manifest.embedding_size) as gal:
        gal.enroll("alice", np.eye(1, b.manifest.embedding_size, dtype=np.float32)[0], "front-center")
    again = load_bundle(bundle_dir)
    with Gallery(g, again.model_id, again.manifest.embedding_size) as gal:
        assert gal.templates("alice").shape == (1, again.manifest.embedding_size)


def test_the_shipped_bundle_loads_with_the_id_its_galleries_hold():
    shipped = REPO / "inference" / "bundles" / "compact"
    if not (shipped / ONNX_NAME).is_file():
        pytest.skip("no shipped bundle in this checkout")
    b = load_bundle(shipped)
    manifest_id = json.loads((shipped / "manifest.json").read_text())["model_id"]
    model_id, kind, meta = bundle_model_id(shipped / ONNX_NAME)
    assert b.model_id == model_id == manifest_id
    if meta:   # a bundle exported with metadata: the id is the graph's and the file says it too
        assert kind == "graph" and model_id == graph_model_id(shipped / ONNX_NAME)
        assert meta["model_id"] == model_id
    else:      # an older bundle: the file's hash, as its galleries hold it
        assert kind == "file" and model_id == _file_hash(shipped / ONNX_NAME)


def test_metadata_props_and_the_graph_id(new_bundle, tmp_path):
    onnx_path = new_bundle / ONNX_NAME
    meta = read_onnx_metadata(onnx_path)
    m = read_manifest(new_bundle)
    assert {"model_id", "verification_threshold", "distance", "postures", "input_size", "embedding_size", "preset",
            "normalisation", "model_id_rule", "bundle_format"} <= set(meta)
    assert meta["model_id"] == m.model_id and float(meta["verification_threshold"]) == m.verification_threshold
    assert json.loads(meta["postures"]) == m.postures and int(meta["input_size"]) == 64
    assert json.loads(meta["normalisation"]) == {"mean": 0.0, "std": 1.0} and meta["bundle_format"] == BUNDLE_FORMAT
    # the id is the graph's with metadata cleared: the stamped file's own hash is something else
    b = load_bundle(new_bundle)
    assert b.model_id == graph_model_id(onnx_path) and b.model_id != _file_hash(onnx_path)
    assert bundle_model_id(onnx_path)[:2] == (b.model_id, "graph")
    # stamping again (other metadata values) leaves the id as it is
    stamp_metadata(onnx_path, m)
    assert graph_model_id(onnx_path) == b.model_id
    # ONNX Runtime sees the metadata too
    import onnxruntime as ort
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert s.get_modelmeta().custom_metadata_map["model_id"] == b.model_id
    # and a gallery enrolled with it matches after a reload
    g = tmp_path / "g.sqlite"
    with Gallery(g, b.model_id, b.manifest.embedding_size) as gal:
        gal.enroll("bob", np.eye(1, b.manifest.embedding_size, dtype=np.float32)[0], "front-center")
    with Gallery(g, load_bundle(new_bundle).model_id, b.manifest.embedding_size) as gal:
        assert gal.templates("bob").shape == (1, b.manifest.embedding_size)


def _edit(onnx_path: Path, fn) -> None:
    model = onnx.load(str(onnx_path))
    fn(model)
    onnx.save(model, str(onnx_path))


@pytest.mark.parametrize("edit, needle", [
    (lambda m: [p for p in m.metadata_props if p.key == "verification_threshold"][0].__setattr__("value", "1.5"),
     "metadata verification_threshold = '1.5' but the manifest says"),
    (lambda m: [p for p in m.metadata_props if p.key == "postures"][0].__setattr__("value", '["a","b","c","d","e"]'),
     "metadata postures"),
    (lambda m: m.graph.initializer[0].raw_data.__len__() and m.graph.initializer[0].__setattr__(
        "raw_data", bytes(reversed(m.graph.initializer[0].raw_data))), "graph hash (metadata_props cleared)"),
    (lambda m: [m.metadata_props.remove(p) for p in list(m.metadata_props) if p.key == "preset"],
     "metadata lacks 'preset'"),
])
def test_an_altered_bundle_is_refused(new_bundle, edit, needle):
    _edit(new_bundle / ONNX_NAME, edit)
    with pytest.raises(BundleError, match="altered") as ei:
        load_bundle(new_bundle)
    assert needle in str(ei.value)


def test_metadata_stripped_is_the_same_model_by_the_file_rule(new_bundle):
    """The graph id of a file is the file hash of the same graph saved without metadata: a bundle whose metadata
    a tool dropped is still the same model (same id, and the manifest's decision hash still holds)."""
    mid = load_bundle(new_bundle).model_id
    _edit(new_bundle / ONNX_NAME, lambda m: m.metadata_props.__delitem__(slice(None)))
    assert bundle_model_id(new_bundle / ONNX_NAME)[1] == "file"
    assert load_bundle(new_bundle).model_id == mid == _file_hash(new_bundle / ONNX_NAME)


def test_stamp_refuses_a_manifest_of_another_graph(bundle_dir, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundle_dir, d)
    m = BundleManifest.model_validate({**read_manifest(d).model_dump(), "model_id": "0" * 16})
    with pytest.raises(ValueError, match="is not the manifest's model_id"):
        stamp_metadata(d / ONNX_NAME, m)


def test_the_verification_rule_follows_the_bundles_calibration(bundle_dir, tmp_path):
    import shutil
    from thzcore.bundle import BundleManifest, read_manifest, write_manifest
    d = tmp_path / "b"
    shutil.copytree(bundle_dir, d)
    old = load_bundle(d)                   # the fixture: calibrated for the nearest template only
    assert old.manifest.posture_template_threshold is None
    assert old.verification_rule("full-left") == (old.threshold, None, None)
    m = read_manifest(d)
    with pytest.raises(ValueError, match="posture_template_threshold"):   # out of the cosine range
        BundleManifest.model_validate(m.model_dump() | {"posture_template_threshold": 2.0})
    write_manifest(d, m.model_copy(update={"posture_template_threshold": 0.25}))
    new = load_bundle(d)
    assert new.verification_rule("full-left") == (0.25, "full-left", None)
    assert new.model_id == old.model_id and new.threshold == old.threshold
    # a decision field: changed without rewriting the hash, the bundle is an altered one
    text = (d / "manifest.json").read_text()
    assert '"posture_template_threshold": 0.25' in text
    (d / "manifest.json").write_text(text.replace('"posture_template_threshold": 0.25',
                                                  '"posture_template_threshold": 0.5'))
    with pytest.raises(BundleError, match="manifest_hash"):
        load_bundle(d)


def test_the_shipped_bundle_verifies_by_posture_template():
    shipped = REPO / "inference" / "bundles" / "compact"
    if not (shipped / ONNX_NAME).is_file():
        pytest.skip("no shipped bundle in this checkout")
    b = load_bundle(shipped)
    t, posture, cohort = b.verification_rule("front-center")
    # S-normalised against the shipped cohort: the threshold is a normalised distance, not a cosine one
    assert posture == "front-center" and cohort is not None and t == b.manifest.score_norm.threshold
    assert cohort.templates.shape == (b.manifest.score_norm.templates, b.manifest.embedding_size)
    assert 0 < b.manifest.posture_template_threshold < 2

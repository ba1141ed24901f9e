"""Builders of the bad input files of issue 13 item 6, each with the `thz` command line that reads it.

`cases(tmp, good_bundle, good_image)` -> [(name, argv, expected exit code)]. Every one must end with
a one-line message and its documented exit code (thz/cli.py EXIT_*), never a traceback.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from thz.cli import EXIT_INPUT, EXIT_USAGE


def _bundle_with(tmp: Path, good: Path, name: str, onnx: bytes | None = None, manifest: str | None = None) -> Path:
    d = tmp / name
    shutil.copytree(good, d)
    if onnx is not None:
        (d / "model.onnx").write_bytes(onnx)
    if manifest is not None:
        (d / "manifest.json").write_text(manifest)
    return d


def _rehashed(tmp: Path, good: Path, name: str, onnx: bytes | None, rehash: bool = True, **fields) -> Path:
    """A bundle whose model.onnx (and manifest fields) were replaced, its model id made to match the new ONNX;
    with fields given and rehash False, the manifest keeps its old manifest_hash (a hand edit)."""
    import json

    from thzcore.bundle import BundleManifest, file_model_id, write_manifest
    d = _bundle_with(tmp, good, name, onnx=onnx)
    m = json.loads((d / "manifest.json").read_text())
    m.update(fields, model_id=file_model_id(d / "model.onnx"))
    if fields and not rehash:
        (d / "manifest.json").write_text(json.dumps(m))
    else:
        try:
            write_manifest(d, BundleManifest.model_validate(m))
        except ValueError:  # a value the manifest model refuses: write it by hand
            (d / "manifest.json").write_text(json.dumps(m))
    return d


def _gallery(tmp: Path, name: str, content: bytes | None = None) -> Path:
    p = tmp / name
    if content is not None:
        p.write_bytes(content)
    return p


def cases(tmp: Path, good_bundle: Path, good_image: Path, good_gallery: Path) -> list[tuple[str, list[str], int]]:
    tmp.mkdir(parents=True, exist_ok=True)
    onnx = (good_bundle / "model.onnx").read_bytes()
    rng = np.random.default_rng(13)
    out: list[tuple[str, list[str], int]] = []

    def verify_with(bundle: Path | None = None, image: Path | None = None, gallery: Path | None = None,
                    extra: list[str] | None = None) -> list[str]:
        return ["verify", "--claim", "alice", "--image", str(image or good_image), "--bundle",
                str(bundle or good_bundle), "--gallery", str(gallery or good_gallery), "--engine", "onnxruntime",
                *(extra or [])]

    # model bundles
    b = _bundle_with(tmp, good_bundle, "truncated_onnx", onnx=onnx[: len(onnx) // 3])
    out.append(("bundle: truncated model.onnx", verify_with(bundle=b), EXIT_INPUT))
    b = _bundle_with(tmp, good_bundle, "random_onnx", onnx=rng.bytes(4096))
    out.append(("bundle: random bytes as model.onnx", verify_with(bundle=b), EXIT_INPUT))
    b = _rehashed(tmp, good_bundle, "random_onnx_rehashed", rng.bytes(4096))
    out.append(("bundle: random ONNX, manifest rehashed", verify_with(bundle=b), EXIT_INPUT))
    b = _rehashed(tmp, good_bundle, "truncated_onnx_rehashed", onnx[: len(onnx) // 3])
    out.append(("bundle: truncated ONNX, manifest rehashed", verify_with(bundle=b), EXIT_INPUT))
    b = _rehashed(tmp, good_bundle, "threshold_2", None, rehash=False, verification_threshold=2.0)
    out.append(("bundle: threshold 2.0 with the old hash", verify_with(bundle=b), EXIT_INPUT))
    b = _rehashed(tmp, good_bundle, "threshold_09", None, rehash=False, verification_threshold=0.9)
    out.append(("bundle: threshold 0.9 hand-edited (old hash)", verify_with(bundle=b), EXIT_INPUT))
    b = _rehashed(tmp, good_bundle, "embedding_64", None, embedding_size=64, rehash=True)
    out.append(("bundle: embedding_size 64 against a 128-d model", verify_with(bundle=b), EXIT_INPUT))
    b = _bundle_with(tmp, good_bundle, "manifest_junk", manifest="{not json")
    out.append(("bundle: manifest not JSON", verify_with(bundle=b), EXIT_INPUT))
    b = _bundle_with(tmp, good_bundle, "manifest_latin1")
    (b / "manifest.json").write_bytes(b"\xff\xfe\x00")
    out.append(("bundle: manifest not UTF-8", verify_with(bundle=b), EXIT_INPUT))
    out.append(("bundle: missing directory", verify_with(bundle=tmp / "nope"), EXIT_INPUT))

    # galleries
    g = _gallery(tmp, "corrupt.sqlite", rng.bytes(8192))
    out.append(("gallery: random bytes", verify_with(gallery=g), EXIT_INPUT))
    g = _gallery(tmp, "truncated.sqlite", good_gallery.read_bytes()[:1000])
    out.append(("gallery: truncated", verify_with(gallery=g), EXIT_INPUT))
    g = tmp / "blob.sqlite"
    shutil.copy(good_gallery, g)
    con = sqlite3.connect(g)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    for t in tables:
        cols = [r[1] for r in con.execute(f"pragma table_info({t})")]
        for c in cols:
            if c in ("embedding", "template", "vector"):
                con.execute(f"update {t} set {c} = x'0102'")
    con.commit()
    con.close()
    out.append(("gallery: 2-byte template blob", verify_with(gallery=g), EXIT_INPUT))
    gd = tmp / "gallery_dir"
    gd.mkdir()
    out.append(("gallery: a directory", verify_with(gallery=gd), EXIT_INPUT))
    out.append(("gallery list: a directory", ["gallery", "list", "--gallery", str(gd), "--bundle", str(good_bundle)],
                EXIT_INPUT))

    # recordings
    junk = tmp / "junk.h5"
    junk.write_bytes(rng.bytes(4096))
    other = tmp / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    stub = tmp / "stub.h5"
    stub.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # what a kill -9 during creation used to leave
    for name, p in (("random bytes", junk), ("HDF5 that is not a recording", other), ("48-byte stub", stub)):
        out.append((f"recording to enroll: {name}",
                    ["enroll", "--subject", "bob", "--recording", str(p), "--bundle", str(good_bundle),
                     "--gallery", str(tmp / "g_enroll.sqlite"), "--engine", "onnxruntime"], EXIT_INPUT))
        out.append((f"recording to identify: {name}",
                    ["identify", "--recording", str(p), "--bundle", str(good_bundle),
                     "--gallery", str(good_gallery), "--engine", "onnxruntime"], EXIT_INPUT))
        cp = tmp / f"recover_{p.name}"
        shutil.copy(p, cp)
        out.append((f"recording to recover: {name}", ["recover", str(cp)], EXIT_INPUT))

    neg = tmp / "negative_count.h5"
    from thzcore.frames import RawFrame
    from thzcore.recording import write_recording
    shape = (4, 16, 8)
    write_recording(neg, [RawFrame(i, 1.0 + i, "s1", np.zeros(shape, np.int16), np.zeros(shape[:2], np.float32),
                                   np.zeros(4, np.float32), np.ones(4, np.int8)) for i in range(2)])
    with h5py.File(neg, "r+") as f:
        f["entry/data/count"][0] = -5
        f["entry"].attrs["status"] = "running"
    out.append(("recording to recover: count -5", ["recover", str(neg)], EXIT_INPUT))

    # images
    jpng = tmp / "junk.png"
    jpng.write_bytes(rng.bytes(300))
    out.append(("image: random bytes as PNG", verify_with(image=jpng), EXIT_INPUT))
    tpng = tmp / "truncated.png"
    tpng.write_bytes(good_image.read_bytes()[:60])
    out.append(("image: truncated PNG", verify_with(image=tpng), EXIT_INPUT))
    tif = tmp / "nan.tiff"
    a = rng.random((64, 64), dtype=np.float32)
    a[3, 3] = np.nan
    Image.fromarray(a, mode="F").save(tif)
    out.append(("image: float TIFF with NaN", verify_with(image=tif), EXIT_INPUT))
    tiny = tmp / "tiny.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tiny)
    out.append(("image: 1x1 PNG", verify_with(image=tiny), EXIT_INPUT))
    big = tmp / "big.png"
    Image.fromarray(np.zeros((12000, 12000), np.uint8)).save(big, optimize=False)
    out.append(("image: 12000x12000 PNG", verify_with(image=big), EXIT_INPUT))
    out.append(("image: missing file", verify_with(image=tmp / "missing.png"), EXIT_INPUT))

    # config files
    latin = tmp / "latin1.toml"
    latin.write_bytes(b'[acquisition]\ngalvo_port = "/dev/tty\xe9"\n')
    out.append(("config: not UTF-8", ["--config", str(latin), "config", "show"], EXIT_USAGE))
    deep = tmp / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    out.append(("config: nested 100k deep", ["--config", str(deep), "config", "show"], EXIT_USAGE))
    out.append(("config validate: not UTF-8", ["config", "validate", str(latin)], EXIT_USAGE))

    # endpoints
    out.append(("thz run --result-endpoint on 0.0.0.0",
                ["run", "--sim", "--subjects", "2", "--bundle", str(good_bundle), "--result-endpoint",
                 "tcp://0.0.0.0:5999"], EXIT_USAGE))
    assert all(os.path.isabs(a) or not a.startswith("/") for _, argv, _ in out for a in argv)
    return out

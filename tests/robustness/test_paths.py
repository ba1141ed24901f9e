"""Paths are confined (issue 13, item 7): `thz bench parity --images DIR` reads only what lies inside DIR."""
from __future__ import annotations

import os

import numpy as np
import pytest

from inference.engines.parity import image_paths
from inference.sources import ImageError, save_png_roi

HEAD = "path,identity,posture,concealed,modality,capture,split\n"


@pytest.fixture
def dataset(tmp_path):
    ds = tmp_path / "ds"
    save_png_roi(ds / "thz" / "a.png", np.zeros((64, 64)))
    save_png_roi(tmp_path / "secret.png", np.ones((64, 64)))  # outside the dataset
    return ds


@pytest.mark.parametrize("row", ["../secret.png", "thz/../../secret.png", "ABS"])
def test_manifest_rows_outside_the_dataset_are_refused(dataset, row, matrix):
    row = str(dataset.parent / "secret.png") if row == "ABS" else row
    (dataset / "manifest.csv").write_text(HEAD + f"thz/a.png,0,front-left,1,thz,0,test\n{row},0,front-left,1,thz,0,test\n")
    with pytest.raises(ImageError, match="outside|absolute"):
        image_paths([str(dataset)])
    matrix.record("paths (bench parity --images)", f"manifest row {row if not row.startswith('/') else '/abs'}",
                  "refused")


def test_symlinks_out_of_the_dataset_are_refused(dataset, matrix):
    os.symlink(dataset.parent / "secret.png", dataset / "thz" / "link.png")
    with pytest.raises(ImageError, match="outside"):
        image_paths([str(dataset / "thz")])  # a directory: its PNGs, found by rglob
    (dataset / "manifest.csv").write_text(HEAD + "thz/link.png,0,front-left,1,thz,0,test\n")
    with pytest.raises(ImageError, match="outside"):
        image_paths([str(dataset)])
    matrix.record("paths (bench parity --images)", "symlink out of the directory", "refused")


def test_paths_inside_stay_accepted(dataset):
    (dataset / "manifest.csv").write_text(HEAD + "thz/a.png,0,front-left,1,thz,0,test\n")
    assert [p.name for p in image_paths([str(dataset)])] == ["a.png"]
    os.symlink(dataset / "thz" / "a.png", dataset / "thz" / "inner.png")  # a symlink that stays inside
    assert sorted(p.name for p in image_paths([str(dataset / "thz")])) == ["a.png", "inner.png"]

"""Fixtures: a tiny bundle exported once per session with torch, and golden inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory):
    from tests.inference.tinymodel import export_bundle
    return export_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=0, threshold=0.4)


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from inference.bundle import load_bundle
    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def golden(bundle):
    """Golden ROIs (seeded) and torch eager outputs of the same weights: the contract every engine meets."""
    from tests.inference.tinymodel import torch_reference
    rois = np.random.default_rng(42).random((4, 64, 64), dtype=np.float32)
    return rois, torch_reference(bundle.prepare(rois))


@pytest.fixture(scope="session")
def ort_engine(bundle):
    from inference.engines.onnxrt import OnnxRuntimeEngine
    return OnnxRuntimeEngine(bundle, intra_op_threads=1, reconstruction=True)

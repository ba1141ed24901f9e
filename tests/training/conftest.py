"""Shared fixtures of the training tests: one thread, a tiny procedural dataset, a small training config."""
from __future__ import annotations

import pytest
import torch

from tests.training.fixture_data import make_dataset
from training.config import TrainingConfig

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("fixture") / "data", n_identities=6, captures=4)


def small_config(**kw) -> TrainingConfig:
    base = dict(epochs=2, num_threads=1, batch_identities=3, batch_per_identity=5, bn_batches=2, warmup_epochs=0)
    base.update(kw)
    return TrainingConfig(**base)

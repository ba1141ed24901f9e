"""The `training` config section: preset, optimisation, loss weights, early stopping."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from thzcore.config import Section


class TrainingConfig(Section):
    preset: Literal["compact", "paper"] = Field("compact", description="network widths preset")
    seed: int = Field(0, description="seed of initialisation, sampling and augmentation")
    epochs: int = Field(40, ge=1, description="maximum epochs")

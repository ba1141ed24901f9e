"""The `sim` config section: the virtual scanner's population, scene and noise."""
from __future__ import annotations

from pydantic import Field

from thzcore.config import Section


class SimConfig(Section):
    seed: int = Field(0, description="seed of captures: noise, jitter, placement")
    population_seed: int = Field(1234, description="seed of the identities (anatomy, albedo)")
    n_identities: int = Field(20, ge=1, le=10_000, description="size of the simulated population")
    difficulty: float = Field(0.5, ge=0.0, le=1.0, description="0 = identities very distinct, 1 = barely resolvable")

"""Shared fixtures of the sim tests: default configs and a quiet scanner (all noise off)."""
from __future__ import annotations

import pytest

from sim.config import SimConfig
from thzcore.scanner import ScannerConfig

QUIET = dict(micro_motion=False, leakage_amplitude=0.0, phase_noise_rad=0.0, gain_drift_db=0.0, line_jitter_s=0.0,
             thermal_counts=0.0, feedback_noise_m=0.0)


@pytest.fixture(scope="session")
def scanner_cfg() -> ScannerConfig:
    return ScannerConfig()


@pytest.fixture(scope="session")
def sim_cfg() -> SimConfig:
    return SimConfig()


@pytest.fixture
def quiet_scanner(scanner_cfg, sim_cfg):
    from sim.scanner import VirtualScanner
    vs = VirtualScanner(scanner_cfg, sim_cfg, seed=5)
    vs.set_noise(**QUIET)
    return vs

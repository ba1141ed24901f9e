"""Suite-wide: every test's data directory ($THZ_DATA_DIR) is a temporary folder, never the checkout or ~/.local."""
from __future__ import annotations

import os

import pytest

from thzcore.datadirs import DATA_DIR_ENV


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory):
    """For session- and package-scoped fixtures, which are built before any test's own data directory."""
    old = os.environ.get(DATA_DIR_ENV)
    os.environ[DATA_DIR_ENV] = str(tmp_path_factory.mktemp("thz-data-session"))
    yield
    if old is None:
        os.environ.pop(DATA_DIR_ENV, None)
    else:
        os.environ[DATA_DIR_ENV] = old


@pytest.fixture(autouse=True)
def thz_data_dir(tmp_path_factory, monkeypatch):
    """A fresh data directory per test (calibration store, gallery, reports, recordings); subprocesses inherit it."""
    d = tmp_path_factory.mktemp("thz-data")
    monkeypatch.setenv(DATA_DIR_ENV, str(d))
    return d

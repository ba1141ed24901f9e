"""Where thz-face keeps its data: one per-user data directory, never the source tree or the working directory.

The data directory is, first match wins:

1. `$THZ_DATA_DIR` (tests and CI point it at a temporary folder),
2. `data_dir` at the top of the config file,
3. the platform's user data directory for `thz-face` (platformdirs: `~/.local/share/thz-face` on Linux,
   `~/Library/Application Support/thz-face` on macOS, `%LOCALAPPDATA%\\thz-face` on Windows).

Under it: `calibration/` (the record store and its reports), `gallery.sqlite`, `reports/` (`thz run`)
and `recordings/` (`thz acquire`). A path set in the config for one of them (calibration.store,
inference.gallery, inference.report_dir, acquisition.record_dir) or given on the command line wins
over the data directory; a relative one is taken as given, from the working directory.
"""
from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "thz-face"
DATA_DIR_ENV = "THZ_DATA_DIR"

# what lives in the data directory, by its name there
CALIBRATION = "calibration"
GALLERY = "gallery.sqlite"
REPORTS = "reports"
RECORDINGS = "recordings"
EVALUATIONS = "evaluations"


def data_dir(configured: str | Path | None = None) -> Path:
    """The data directory ($THZ_DATA_DIR, else `configured`, else the platform's user data dir); not created here."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def data_path(name: str, configured: str | Path | None = None) -> Path:
    """`name` (CALIBRATION, GALLERY, REPORTS, RECORDINGS, EVALUATIONS) in the data directory."""
    return data_dir(configured) / name


def resolve(explicit: str | Path | None, name: str, configured: str | Path | None = None) -> Path:
    """An explicitly set path (config field or option) as given, `~` expanded; else `name` in the data directory."""
    if explicit:
        return Path(explicit).expanduser()
    return data_path(name, configured)

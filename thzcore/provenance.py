"""Where an artefact came from: the source commit of this checkout (datasets, bundles)."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
__version__ = "0.1.0"  # pyproject.toml's version, for a source checkout that is not installed


def software_version() -> str:
    """'thz-face VERSION', from the installed distribution or, in a plain checkout, __version__."""
    try:
        from importlib.metadata import version
        return f"thz-face {version('thz-face')}"
    except Exception:  # not installed as a distribution (source checkout)
        return f"thz-face {__version__}"


def source_commit(paths: tuple[str, ...] = ()) -> str:
    """The checkout's commit (12 hex digits), '+dirty' when any of `paths` (relative to the repository,
    all of it when empty) has uncommitted changes; '' outside a git checkout (an installed wheel)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        if rev.returncode:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""

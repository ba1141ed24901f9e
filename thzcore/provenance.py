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


def code_hash(paths: tuple[str, ...]) -> str:
    """sha256[:16] over the Python sources under `paths` (folders or files relative to the repository):
    each file's relative path and bytes, in sorted order. Unlike the commit it names the code itself, so
    two builds whose images differ can be told apart by code (this hash changed) or by environment
    (it did not); '' when none of the paths exists (an installed wheel)."""
    import hashlib

    files = sorted({f for p in paths for f in ((REPO / p).rglob("*.py") if (REPO / p).is_dir()
                                               else [REPO / p] if (REPO / p).is_file() else [])})
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions `names` ('' for one that is not installed), and Python's."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = ""
    return out

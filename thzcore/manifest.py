"""Dataset manifest: one CSV row per image with explicit columns, validated on read.

Columns: path (relative to the dataset root), identity (int >= 0), posture (POSTURES name),
concealed (0/1), modality (thz|visible), capture (int, the capture index within identity x posture;
-1 for visible images), split (train|val|test).
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thzcore.labels import MODALITIES, POSTURES, SPLITS

MANIFEST_FILE = "manifest.csv"
COLUMNS = ("path", "identity", "posture", "concealed", "modality", "capture", "split")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, row and column."""


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(min_length=1)
    identity: int = Field(ge=0)
    posture: str
    concealed: bool
    modality: str
    capture: int = Field(ge=-1)
    split: str

    @field_validator("posture", "modality", "split")
    @classmethod
    def _one_of(cls, v: str, info) -> str:
        allowed = {"posture": POSTURES, "modality": MODALITIES, "split": SPLITS}[info.field_name]
        if v not in allowed:
            raise ValueError(f"{info.field_name} {v!r} not in {allowed}")
        return v

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError(f"path {v!r} must be relative to the dataset root, without '..'")
        return v

    @property
    def posture_index(self) -> int:
        return POSTURES.index(self.posture)


def write_manifest(root: str | Path, rows: list[Row]) -> Path:
    p = Path(root) / MANIFEST_FILE
    tmp = p.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.path, r.identity, r.posture, int(r.concealed), r.modality, r.capture, r.split])
    tmp.replace(p)  # atomic: a crash never leaves half a manifest
    return p


def read_manifest(root: str | Path, check_files: bool = True) -> list[Row]:
    """Read and validate `root/manifest.csv`; raise ManifestError naming the row and column."""
    root = Path(root)
    p = root / MANIFEST_FILE
    if not p.is_file():
        raise ManifestError(f"{root} has no {MANIFEST_FILE}; make one with `thz sim dataset --out {root}` (synthetic) or "
                            f"`thz dataset from-recordings ... --out {root}` (recordings)")
    rows: list[Row] = []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ManifestError(f"{p}: columns {reader.fieldnames} differ from {list(COLUMNS)}")
        for i, rec in enumerate(reader, start=2):
            try:
                row = Row.model_validate(rec)
            except ValidationError as exc:
                e = exc.errors()[0]
                raise ManifestError(f"{p}:{i}: column {e['loc'][0] if e['loc'] else '?'}: {e['msg']}") from None
            if check_files and not (root / row.path).is_file():
                raise ManifestError(f"{p}:{i}: image {row.path!r} does not exist")
            rows.append(row)
    if not rows:
        raise ManifestError(f"{p} lists no images")
    return rows


def content_hash(root: str | Path) -> str:
    """sha256[:16] of the manifest and the bytes of every file it lists (in manifest order).

    The manifest alone names files, not their content: two builds by different simulator versions
    share it. This hash changes when any image does."""
    root = Path(root)
    h = hashlib.sha256((root / MANIFEST_FILE).read_bytes())
    for row in read_manifest(root, check_files=True):
        h.update(row.path.encode() + b"\0" + hashlib.sha256((root / row.path).read_bytes()).digest())
    return h.hexdigest()[:16]

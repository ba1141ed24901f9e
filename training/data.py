"""Datasets for training: images in memory, capture pairing, the paper's triplets, visible-image lookup.

Pairing (the reconstruction target): a concealed THz capture of identity i, posture p, capture k is
paired with the UNCONCEALED capture of the same i and p with the same capture index k when it exists,
else the one with the nearest index (ties: the lower). The pairing is a pure function of the manifest,
so it is reproducible (no set ordering anywhere: everything is sorted).

Triplets (paper sec. 3.1): anchor = concealed capture, positive = unconcealed capture of the same
identity and posture, negative = unconcealed capture of ANOTHER identity in the same posture.
Visible images: one per identity x posture x concealment (modality=visible, capture=-1); a THz image
is matched with the visible image of its own identity, posture and concealment. Where none exists,
`has_visible` is False and the teacher never sees that sample.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from thzcore.labels import POSTURES
from thzcore.logs import get_logger
from thzcore.manifest import MANIFEST_FILE, Row, content_hash, read_manifest

log = get_logger(__name__)
SIZE = 64


def load_image(path: Path, channels: int) -> np.ndarray:
    """Read a PNG (8- or 16-bit, grey or RGB) or .npy into float32 (channels, 64, 64) in [0, 1]."""
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False).astype(np.float32)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[0] not in (1, 3):
            raise ValueError(f"{path}: array of shape {a.shape}, expected (H, W) or (C, H, W) with C in (1, 3)")
    else:
        with Image.open(path) as im:
            if im.mode.startswith("I"):  # 16-bit grey PNG
                a = np.asarray(im, dtype=np.float32)[None] / 65535.0
            else:
                a = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if a.shape[0] != channels:  # grey -> RGB by replication, RGB -> grey by the channel mean
        a = np.repeat(a, channels, 0) if a.shape[0] == 1 else a.mean(0, keepdims=True)
    if a.shape[1:] != (SIZE, SIZE):
        t = torch.from_numpy(np.ascontiguousarray(a))[None]
        a = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)[0].numpy()
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def roi_quality(image_path: Path) -> float:
    """The face locator's quality of a dataset ROI: `roi.quality` of its sidecar JSON (written by `thz sim
    dataset` beside each PNG); NaN when there is no readable sidecar (an imported lab dataset)."""
    try:
        q = json.loads(image_path.with_suffix(".json").read_text())["roi"]["quality"]
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan")
    return float(q) if isinstance(q, (int, float)) and not isinstance(q, bool) else float("nan")


def manifest_hash(root: str | Path) -> str:
    return hashlib.sha256((Path(root) / MANIFEST_FILE).read_bytes()).hexdigest()[:16]


@dataclass
class ThzData:
    """All THz images of a dataset in memory plus their labels; visible images keyed by (id, posture, concealed)."""

    root: Path
    images: np.ndarray                 # (N,1,64,64) float32 [0,1]
    identity: np.ndarray               # (N,) int64
    posture: np.ndarray                # (N,) int64, index into POSTURES
    concealed: np.ndarray              # (N,) bool
    capture: np.ndarray                # (N,) int64
    split: np.ndarray                  # (N,) str
    paths: list[str]
    visible: dict[tuple[int, int, bool], np.ndarray] = field(default_factory=dict)  # -> (Cv,64,64)
    visible_channels: int = 3
    quality: np.ndarray | None = None  # (N,) the face locator's score of each ROI (sidecar JSON), NaN if unknown

    @classmethod
    def load(cls, root: str | Path, visible_channels: int = 3) -> "ThzData":
        root = Path(root)
        rows: list[Row] = read_manifest(root)
        thz = sorted((r for r in rows if r.modality == "thz"),
                     key=lambda r: (r.identity, r.posture_index, r.concealed, r.capture, r.path))
        if not thz:
            raise ValueError(f"{root}: the manifest lists no THz images")
        images = np.stack([load_image(root / r.path, 1) for r in thz])
        vis = {}
        for r in rows:
            if r.modality == "visible":
                key = (r.identity, r.posture_index, r.concealed)
                if key in vis:
                    raise ValueError(f"{root}: two visible images for identity {r.identity}, posture {r.posture}, "
                                     f"concealed {r.concealed}")
                vis[key] = load_image(root / r.path, visible_channels)
        data = cls(root, images,
                   np.array([r.identity for r in thz], np.int64),
                   np.array([r.posture_index for r in thz], np.int64),
                   np.array([r.concealed for r in thz], bool),
                   np.array([r.capture for r in thz], np.int64),
                   np.array([r.split for r in thz]), [r.path for r in thz], vis, visible_channels,
                   np.array([roi_quality(root / r.path) for r in thz], np.float64))
        counts = {s: int((data.split == s).sum()) for s in ("train", "val", "test")}
        log.info("dataset loaded", extra={"root": str(root), "thz": len(thz), "visible": len(vis), "splits": counts})
        return data

    def __len__(self) -> int:
        return len(self.identity)

    def hold_out(self, k: int, identities: list[int] | None = None) -> list[int]:
        """Move every THz image of `identities` (default: the k highest ids) to split "heldout"."""
        ids = sorted(int(i) for i in np.unique(self.identity))
        held = sorted(identities) if identities is not None else (ids[-k:] if k else [])
        if held and len(ids) - len(held) < 2:
            raise ValueError(f"holding out {len(held)} of {len(ids)} identities leaves fewer than 2 to train on")
        if held and len(held) < 2 and identities is None:
            raise ValueError(f"holdout_identities={k}: the identity-disjoint protocol needs at least 2 identities")
        self.split = np.where(np.isin(self.identity, held), "heldout", self.split)
        return held

    def keep_identities(self, identities: list[int]) -> None:
        """Leave only `identities` in the splits; every other image goes to split "excluded"."""
        present = set(int(i) for i in np.unique(self.identity))
        missing = sorted(set(identities) - present)
        if missing:
            raise ValueError(f"identities {missing} are not in {self.root} (it has {min(present)}..{max(present)})")
        self.split = np.where(np.isin(self.identity, list(identities)), self.split, "excluded")

    def select(self, splits: tuple[str, ...]) -> np.ndarray:
        """Indices (sorted) of the THz images in the given splits."""
        return np.flatnonzero(np.isin(self.split, list(splits)))

    def visible_for(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Visible images (n, Cv, 64, 64) for THz indices idx (zeros where missing) and the has_visible mask.

        The zeros are placeholders for array shape only: every consumer selects with the mask first.
        """
        out = np.zeros((len(idx), self.visible_channels, SIZE, SIZE), np.float32)
        has = np.zeros(len(idx), bool)
        for j, i in enumerate(idx):
            v = self.visible.get((int(self.identity[i]), int(self.posture[i]), bool(self.concealed[i])))
            if v is not None:
                out[j], has[j] = v, True
        return out, has

    def provenance(self) -> dict:
        """Where the data came from: path, manifest hash, counts, and the builder's plan (seeds) when recorded."""
        p = {"path": str(self.root), "manifest_sha256_16": manifest_hash(self.root),
             "content_sha256_16": content_hash(self.root), "thz_images": len(self),
             "visible_images": len(self.visible), "identities": int(len(np.unique(self.identity))),
             "splits": {s: int((self.split == s).sum()) for s in ("train", "val", "test", "heldout")}}
        summary = self.root / "dataset.json"  # written by `thz sim dataset`
        if summary.is_file():
            try:
                built = json.loads(summary.read_text())
                p["plan"] = built.get("plan")
                p["built_from_commit"] = built.get("git_commit")
            except (json.JSONDecodeError, AttributeError):
                log.warning("unreadable dataset.json: provenance without the plan", extra={"path": str(summary)})
        return p


@dataclass
class TripletIndex:
    """The concealed anchors of some splits, each with its paired target, and the unconcealed pools.

    anchors[j]  THz index of a concealed capture
    target[j]   THz index of its paired unconcealed capture (same identity, posture; nearest capture)
    cells       (identity, posture) -> sorted unconcealed THz indices (positives come from here)
    by_posture  posture -> sorted unconcealed THz indices (negatives: those of another identity)
    """

    data: ThzData
    anchors: np.ndarray
    target: np.ndarray
    cells: dict[tuple[int, int], np.ndarray]
    by_posture: dict[int, np.ndarray]

    @classmethod
    def build(cls, data: ThzData, splits: tuple[str, ...]) -> "TripletIndex":
        idx = data.select(splits)
        unc = idx[~data.concealed[idx]]
        cells: dict[tuple[int, int], np.ndarray] = {}
        for i in unc:
            cells.setdefault((int(data.identity[i]), int(data.posture[i])), []).append(int(i))  # type: ignore[arg-type]
        cells = {k: np.array(sorted(v), np.int64) for k, v in sorted(cells.items())}
        by_posture = {p: np.array(sorted(int(i) for i in unc if data.posture[i] == p), np.int64)
                      for p in range(len(POSTURES))}
        anchors, target, dropped = [], [], 0
        for i in idx[data.concealed[idx]]:
            pool = cells.get((int(data.identity[i]), int(data.posture[i])))
            if pool is None:
                dropped += 1
                continue
            gap = np.abs(data.capture[pool] - data.capture[i])
            anchors.append(int(i))
            target.append(int(pool[np.lexsort((data.capture[pool], gap))[0]]))  # nearest capture, then lower
        if dropped:
            log.warning("concealed captures without an unconcealed partner dropped",
                        extra={"splits": list(splits), "dropped": dropped})
        if not anchors:
            raise ValueError(f"no concealed capture in splits {splits} has an unconcealed partner")
        return cls(data, np.array(anchors, np.int64), np.array(target, np.int64), cells, by_posture)

    def __len__(self) -> int:
        return len(self.anchors)

    def negatives_for(self, j: int) -> np.ndarray:
        """Unconcealed captures of the anchor's posture from other identities."""
        a = self.anchors[j]
        pool = self.by_posture[int(self.data.posture[a])]
        return pool[self.data.identity[pool] != self.data.identity[a]]

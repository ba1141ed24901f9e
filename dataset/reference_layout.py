"""The authors' dataset layout: export ours to it (so their code runs on our data) and import it
(so a lab's real data, kept in that layout, trains here).

Layout (Bergman et al.'s code parses it; identity = the path part two above the file, posture and
sample from the file stem split at '_'):
    thz/<id>/<unit>/<id>_<c><k><c>_<sample>.png       c = b (concealed, "balaclava") or n (unconcealed),
    visible/<id>/<unit>/<id>_<c><k><c>_<sample>.png   k = 1..5 the posture (POSTURES order), sample = capture
    data/{train,val,test,train_val}_dataset.csv       columns anchor,positive,negative (relative to thz/),
                                                      visible_concealed,visible_unconcealed,visible_negative
                                                      (relative to visible/)
Images are 8-bit grey PNG: their loader opens with PIL `.convert('L')`, which clips 16-bit values
instead of scaling them. Our ids are written as 3 digits (id 7 -> "007"); <unit> is the scanner id.

Triplets of a split: every concealed THz capture is an anchor; positive = the unconcealed capture of
the same identity and posture with the same capture index (else the nearest index in the split);
negative = an unconcealed capture of another identity in the same posture and split, drawn with
numpy default_rng(seed). The visible columns name the visible images of the anchor's identity and
posture (concealed and unconcealed) and of the negative's identity (unconcealed).
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from thzcore.labels import POSTURES, SPLITS
from thzcore.logs import get_logger
from thzcore.manifest import ManifestError, Row, read_manifest, write_manifest

log = get_logger(__name__)
CSV_COLUMNS = ("anchor", "positive", "negative", "visible_concealed", "visible_unconcealed", "visible_negative")
NAME_RE = re.compile(r"^(?P<id>[^_/]+)_(?P<c1>[bn])(?P<k>[1-9])(?P<c2>[bn])_(?P<sample>\d+)$")
SPLIT_CSVS = {"test": "test_dataset.csv", "val": "val_dataset.csv", "train": "train_dataset.csv"}


def reference_name(identity_code: str, posture: str, concealed: bool, sample: int) -> str:
    c = "b" if concealed else "n"
    return f"{identity_code}_{c}{POSTURES.index(posture) + 1}{c}_{sample}.png"


def _to_8bit(src: Path, dst: Path) -> None:
    with Image.open(src) as im:
        if im.mode.startswith("I"):
            a = np.asarray(im, dtype=np.float64)
            out = Image.fromarray(np.rint(a / 257.0).clip(0, 255).astype(np.uint8), mode="L")
        else:
            out = im.convert("L") if im.mode not in ("L", "RGB") else im.copy()
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst, format="PNG")


def _triplets(rows: list[Row], paths: dict[Row, str], vis: dict[tuple, str], rng: np.random.Generator
              ) -> list[dict[str, str]]:
    unconc: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for r in rows:
        if not r.concealed:
            unconc[(r.identity, r.posture)].append(r)
    out = []
    for a in sorted((r for r in rows if r.concealed), key=lambda r: (r.identity, POSTURES.index(r.posture), r.capture)):
        pool = sorted(unconc.get((a.identity, a.posture), []), key=lambda r: (abs(r.capture - a.capture), r.capture))
        negs = sorted((r for (i, p), lst in unconc.items() if p == a.posture and i != a.identity for r in lst),
                      key=lambda r: (r.identity, r.capture))
        if not pool or not negs:
            continue
        pos, neg = pool[0], negs[int(rng.integers(len(negs)))]
        out.append({"anchor": paths[a], "positive": paths[pos], "negative": paths[neg],
                    "visible_concealed": vis.get((a.identity, a.posture, True), ""),
                    "visible_unconcealed": vis.get((a.identity, a.posture, False), ""),
                    "visible_negative": vis.get((neg.identity, neg.posture, False), "")})
    return out


def _write_csv(path: Path, recs: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(recs)


def export_reference(dataset_root: str | Path, ref_root: str | Path, seed: int = 0,
                     unit: str = "thz340") -> dict[str, Any]:
    """Write the authors' layout of the dataset at dataset_root under ref_root; returns counts."""
    root, ref = Path(dataset_root), Path(ref_root)
    rows = read_manifest(root)
    paths: dict[Row, str] = {}
    vis: dict[tuple, str] = {}
    for r in rows:
        name = reference_name(f"{r.identity:03d}", r.posture, r.concealed, max(r.capture, 0))
        rel = f"{r.identity:03d}/{unit}/{name}"
        if r.modality == "thz":
            paths[r] = rel
            _to_8bit(root / r.path, ref / "thz" / rel)
        else:
            vis[(r.identity, r.posture, r.concealed)] = rel
            _to_8bit(root / r.path, ref / "visible" / rel)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    per_split: dict[str, list[dict[str, str]]] = {}
    for split in ("train", "val", "test"):
        recs = _triplets([r for r in paths if r.split == split], paths, vis, rng)
        per_split[split] = recs
        _write_csv(ref / "data" / SPLIT_CSVS[split], recs)
        counts[split] = len(recs)
    _write_csv(ref / "data" / "train_val_dataset.csv", per_split["train"] + per_split["val"])
    (ref / "README.txt").write_text(
        "Dataset in the layout of Bergman et al.'s code (exported by `thz sim dataset --export-reference`).\n"
        f"thz_data_dir = {ref / 'thz'}\nvisible_data_dir = {ref / 'visible'}\n"
        "CSVs in data/: anchor,positive,negative relative to thz_data_dir; visible_* relative to visible_data_dir.\n"
        "The authors' training loader opens these paths as they are, joining no data root: start it with\n"
        f"thz/ as the working directory (cd {ref / 'thz'}), or it fails with 'No such file or directory:\n"
        "000/thz340/...'.\n")
    summary = {"root": str(ref), "thz_images": len(paths), "visible_images": len(vis), "triplets": counts}
    log.info("reference layout written", extra=summary)
    return summary


# ---------------------------------------------------------------- import
def _parse(path: Path, base: Path) -> tuple[str, str, bool, int]:
    """(identity code, posture, concealed, sample) of <id>/<unit>/<id>_<c><k><c>_<sample>.png."""
    rel = path.relative_to(base)
    if len(rel.parts) != 3:
        raise ManifestError(f"{path}: expected <id>/<unit>/<file>.png under {base}")
    m = NAME_RE.match(path.stem)
    if m is None:
        raise ManifestError(f"{path}: file name is not <id>_<b|n><k><b|n>_<sample>.png")
    if m["c1"] != m["c2"]:
        raise ManifestError(f"{path}: concealment letters {m['c1']!r} and {m['c2']!r} differ")
    k = int(m["k"])
    if not 1 <= k <= len(POSTURES):
        raise ManifestError(f"{path}: posture {k} outside 1..{len(POSTURES)}")
    if m["id"] != rel.parts[0]:
        raise ManifestError(f"{path}: identity {m['id']!r} in the name differs from its folder {rel.parts[0]!r}")
    return m["id"], POSTURES[k - 1], m["c1"] == "b", int(m["sample"])


def _csv_splits(csv_dir: Path | None) -> dict[str, str]:
    """relative THz path -> split, from the split CSVs (test wins over val wins over train)."""
    out: dict[str, str] = {}
    if csv_dir is None:
        return out
    for split in ("test", "val", "train"):
        p = csv_dir / SPLIT_CSVS[split]
        if not p.is_file():
            continue
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"anchor", "positive", "negative"} - set(reader.fieldnames or ())
            if missing:
                raise ManifestError(f"{p}: lacks columns {sorted(missing)}")
            for rec in reader:
                for col in ("anchor", "positive", "negative"):
                    v = (rec.get(col) or "").strip()
                    if v:
                        out.setdefault(Path(v).as_posix(), split)
    return out


def seeded_capture_split(captures: list[int], seed: int, identity: int, posture: str) -> dict[int, str]:
    """The synthetic dataset's rule on an arbitrary set of capture indices: first of a seeded
    permutation -> test, second -> val (>= 3 captures), rest -> train."""
    caps = sorted(set(captures))
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, 0x5B1, identity, POSTURES.index(posture)])
    order = [caps[i] for i in np.random.default_rng(ss).permutation(len(caps))]
    return {c: ("test" if n == 0 and len(caps) >= 2 else "val" if n == 1 and len(caps) >= 3 else "train")
            for n, c in enumerate(order)}


def import_reference(thz_dir: str | Path, out: str | Path, visible_dir: str | Path | None = None,
                     csv_dir: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Copy a dataset in the authors' layout into `out` (out/thz/..., out/visible/...) and write
    out/manifest.csv. Splits come from the CSVs in csv_dir where they name a file, else from
    seeded_capture_split. Identities: numeric folder names keep their number, otherwise sorted names
    map to 0..N-1 (out/identities.json records the mapping)."""
    thz_dir, out = Path(thz_dir), Path(out)
    vdir = Path(visible_dir) if visible_dir is not None else None
    if not thz_dir.is_dir():
        raise ManifestError(f"THz directory {thz_dir} does not exist")
    thz_files = sorted(thz_dir.glob("*/*/*.png"))
    if not thz_files:
        raise ManifestError(f"{thz_dir} holds no <id>/<unit>/*.png images")
    vis_files = sorted(vdir.glob("*/*/*.png")) if vdir is not None and vdir.is_dir() else []
    parsed = [(p, *_parse(p, thz_dir)) for p in thz_files]
    vparsed = [(p, *_parse(p, vdir)) for p in vis_files]  # type: ignore[arg-type]
    codes = sorted({c for _, c, *_ in parsed} | {c for _, c, *_ in vparsed})
    numeric = all(c.isdigit() for c in codes)
    ident = {c: (int(c) if numeric else n) for n, c in enumerate(codes)}
    if not numeric:
        out.mkdir(parents=True, exist_ok=True)
        (out / "identities.json").write_text(json.dumps(ident, indent=2))
    csv_split = _csv_splits(Path(csv_dir) if csv_dir is not None else None)
    seen: dict[tuple, Path] = {}
    caps: dict[tuple[int, str], list[int]] = defaultdict(list)
    for p, code, posture, conc, sample in parsed:
        key = (ident[code], posture, conc, sample)
        if key in seen:
            raise ManifestError(f"{p} and {seen[key]} are both identity {code}, {posture}, "
                                f"{'concealed' if conc else 'unconcealed'}, sample {sample}")
        seen[key] = p
        caps[(ident[code], posture)].append(sample)
    fallback = {k: seeded_capture_split(v, seed, *k) for k, v in caps.items()}
    rows: list[Row] = []
    from_csv = 0
    for p, code, posture, conc, sample in parsed:
        rel = p.relative_to(thz_dir).as_posix()
        split = csv_split.get(rel)
        from_csv += split is not None
        split = split or fallback[(ident[code], posture)][sample]
        dst = out / "thz" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        rows.append(Row(path=f"thz/{rel}", identity=ident[code], posture=posture, concealed=conc, modality="thz",
                        capture=sample, split=split))
    vseen: set[tuple] = set()
    for p, code, posture, conc, _ in vparsed:
        key = (ident[code], posture, conc)
        if key in vseen:
            log.warning("second visible image for one identity/posture/concealment ignored", extra={"file": str(p)})
            continue
        vseen.add(key)
        rel = p.relative_to(vdir).as_posix()  # type: ignore[arg-type]
        dst = out / "visible" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        rows.append(Row(path=f"visible/{rel}", identity=ident[code], posture=posture, concealed=conc,
                        modality="visible", capture=-1, split="train"))
    # a capture index's concealed and unconcealed scans should share a split: count violations
    by_cap: dict[tuple, set[str]] = defaultdict(set)
    for r in rows:
        if r.modality == "thz":
            by_cap[(r.identity, r.posture, r.capture)].add(r.split)
    mixed = sum(1 for v in by_cap.values() if len(v) > 1)
    if mixed:
        log.warning("captures whose concealed and unconcealed scans sit in different splits (from the CSVs)",
                    extra={"captures": mixed})
    write_manifest(out, rows)
    summary = {"root": str(out), "thz_images": sum(r.modality == "thz" for r in rows),
               "visible_images": sum(r.modality == "visible" for r in rows), "identities": len(codes),
               "split_from_csv": from_csv, "mixed_split_captures": mixed,
               "splits": {s: sum(r.split == s and r.modality == "thz" for r in rows) for s in SPLITS}}
    log.info("reference layout imported", extra=summary)
    return summary

"""Engine parity: how far an engine's outputs are from the reference engine's on the same ROIs.

The reference is ONNX Runtime running the bundle's FP32 graph on the CPU. Per candidate engine:
  embedding    cosine c_i = a_i . b_i / (|a_i| |b_i|): min and median; max |a - b|
  posture      argmax agreement; max |softmax(a) - softmax(b)|
  decisions    every pair (i, j) of the ROIs: d = 1 - e_i . e_j (the gallery's cosine distance),
               accepted when d <= threshold; the fraction of pairs decided the same, max |d_a - d_b|
  reconstruction  PSNR = 10 log10(1 / MSE) against the reference image (data range 1): min, median
The contract (the one `tests/inference/test_engines.py` asserts): FP32 cosine >= 0.9999, FP16 cosine
>= 0.999, and the same posture on every ROI. Decision agreement and PSNR are reported, not judged:
a pair whose distance sits within a rounding error of the threshold may flip legitimately.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from inference.matching import cosine_distance
from thzcore.softmax import softmax

MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def psnr(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB for images in [0, 1], over all but the first axis; inf where identical."""
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    out = np.asarray(out, np.float64).reshape(len(out), -1)
    mse = np.mean((ref - out) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(1.0 / np.where(mse > 0, mse, 1.0)), np.inf)


def parity_stats(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], threshold: float) -> dict:
    """Agreement of `out` with `ref` (engine outputs on the same ROIs); see the module docstring."""
    if ref["embedding"].shape != out["embedding"].shape:
        raise ValueError(f"embedding shapes differ: {ref['embedding'].shape} vs {out['embedding'].shape}")
    n = len(ref["embedding"])
    cos = _cosines(ref["embedding"], out["embedding"])
    agree = ref["posture_logits"].argmax(1) == out["posture_logits"].argmax(1)
    s = {
        "n_rois": n,
        "cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
        "embedding_max_abs": float(np.abs(ref["embedding"] - out["embedding"]).max()),
        "posture_agreement": float(agree.mean()), "posture_flips": int((~agree).sum()),
        "probability_max_abs": float(np.abs(softmax(ref["posture_logits"]) - softmax(out["posture_logits"])).max()),
    }
    if n >= 2:
        iu = np.triu_indices(n, k=1)
        d_ref = cosine_distance(ref["embedding"], ref["embedding"])[iu]
        d_out = cosine_distance(out["embedding"], out["embedding"])[iu]
        same = (d_ref <= threshold) == (d_out <= threshold)
        s.update(pairs=int(len(d_ref)), decision_flips=int((~same).sum()), decision_agreement=float(same.mean()),
                 distance_max_abs=float(np.abs(d_ref - d_out).max()))
    if "reconstruction" in ref and "reconstruction" in out:
        p = psnr(ref["reconstruction"], out["reconstruction"])
        s.update(psnr_min_db=float(p.min()), psnr_median_db=float(np.median(p)))
    return s


def contract_failures(stats: dict, precision: str) -> list[str]:
    """What breaks the engine contract at `precision` (empty when it holds)."""
    fails = []
    if stats["cosine_min"] < MIN_COSINE[precision]:
        fails.append(f"embedding cosine {stats['cosine_min']:.6f} < {MIN_COSINE[precision]}")
    if stats["posture_flips"]:
        fails.append(f"posture differs on {stats['posture_flips']} of {stats['n_rois']} ROIs")
    return fails


def _inside(root: Path, q: Path, what: str) -> Path:
    """q, when it (symlinks resolved) lies inside root; ImageError naming it otherwise."""
    from inference.sources import ImageError

    if not q.resolve().is_relative_to(root.resolve()):
        raise ImageError(f"{what} {str(q)!r} lies outside {str(root)!r} (a '..' path, an absolute path or a "
                         "symlink out of it): refused")
    return q


def image_paths(sources: list[str]) -> list[Path]:
    """PNG files named, or found under directories; a dataset directory gives its manifest's THz images.

    Paths from a manifest and files found under a directory must stay inside it: a manifest row with
    '..' or an absolute path, or a symlink pointing out, is refused (the bench reads only what it was given).
    """
    from inference.sources import ImageError

    paths: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_file():
            paths.append(p)
        elif (p / "manifest.csv").is_file():
            with open(p / "manifest.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"path", "modality"} <= set(rows[0]):
                raise ImageError(f"{p / 'manifest.csv'}: needs the columns 'path' and 'modality'")
            for r in rows:
                if r["modality"] == "thz":
                    if Path(r["path"]).is_absolute():
                        raise ImageError(f"{p / 'manifest.csv'}: path {r['path']!r} is absolute; rows name files "
                                         "relative to the dataset directory")
                    paths.append(_inside(p, p / r["path"], f"{p / 'manifest.csv'}: row path"))
        elif p.is_dir():
            paths.extend(_inside(p, q, "image") for q in sorted(p.rglob("*.png")))
        else:
            raise FileNotFoundError(f"{src!r} is neither an image file nor a directory")
    if not paths:
        raise ValueError(f"no images found in {sources}")
    return paths


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is empty on most Linux builds)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()

"""Face ROI: find the head in a (lines x 256) frame, crop a box of physical size, bicubic 64x64, [0, 1].

The frame is anisotropic: a column is pitch_x = fov_x / 256 (1.76 mm), a row pitch_y = fov_y / 64
(7.03 mm), so the default 0.26 x 0.30 m box is about 148 columns x 42.7 rows.

Finding the head (the subject moves within the field; at 340 GHz a face is seen by its specular
glints, forehead, nose, lips, chin, cheekbones, against a background that falls outside the gate):
  1. the frame's power (a dB frame is converted) smoothed by a box of about 2 x 2 cm, in dB;
  2. background level b = 20th percentile of the smoothed frame; bright = smoothed > b + T
     (T = processing.roi_threshold_db); the bright pixels are grouped by dilating them with an
     ellipse of radius processing.roi_glint_merge_m, so the glints of one face, a few cm apart,
     form one group;
  3. the group with the most excess power is the subject, its bright pixels the region; the
     region's first row is the crown when the head is seen whole (more than half of the group
     bright) and otherwise the top glint, which lies
     processing.roi_glint_crown_offset_m below the crown; the head centre column is the mean
     column of the region over the rows of the top 0.22 m;
  4. the box: roi_width_m centred on the head column, its top roi_head_top_margin_m above the
     head top, roi_height_m tall; shifted (not shrunk) to stay inside the frame.

Quality score in [0, 1] = contrast * coverage * containment (* focus, from the subject's range, when the
stage measured it: processing.rangefinder):
  contrast    = clip((median smoothed dB of the region's pixels in the box - b) / (2 T), 0, 1)
  coverage    = clip(fraction of the box covered by the group / 0.35, 0, 1)
  containment = 1, times 0.5 when the mask touches the frame's top row (head cut off) and 0.75
                when the box had to be shifted by more than 10% of its width to fit the frame.
No face (found = False, image None, `reason` says why): no pixel above b + T, a single glint, a region
smaller than 5% of the expected head area (0.15 x 0.20 m), or quality < roi_min_quality.

Resize and normalisation (the rule training expects; the dataset uses this very function):
  the box (fractional pixel edges) is resampled to roi_size x roi_size with PIL's bicubic filter
  (Keys a = -0.5, support widened by the scale factor when shrinking, i.e. antialiased) on the
  dB image; then x = clip((dB - P_lo) / (P_hi - P_lo), 0, 1) with P_lo, P_hi the
  roi_norm_low_pct / roi_norm_high_pct percentiles of that 64x64 dB ROI. Output float32 in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from processing.config import ProcessingConfig
from processing.morphology import dilate_rows, row_half_widths
from processing.rangefinder import RangeEstimate
from thzcore.scanner import ScannerConfig

HEAD_HEIGHT_M = 0.22  # crown to chin of an adult head (m): rows used to centre the box
HEAD_AREA_M2 = 0.15 * 0.20  # frontal area of a head (m^2); a region needs 5% of it (a few glints)


@dataclass
class RoiResult:
    """found: a face was located; image: (roi_size, roi_size) float32 in [0, 1] or None;
    box_px: (row0, col0, rows, cols) fractional frame pixels; box_m: (x_left, y_top, width, height) in
    metres at the standoff plane (x right, y up, field centre = 0); quality in [0, 1]; reason: why not found."""

    found: bool
    image: np.ndarray | None
    box_px: tuple[float, float, float, float] | None
    box_m: tuple[float, float, float, float] | None
    quality: float
    reason: str = ""
    range: RangeEstimate | None = None  # the subject's range and focus (processing.rangefinder), when measured

    def meta(self) -> dict:
        m = {"found": self.found, "quality": round(float(self.quality), 4), "reason": self.reason,
             "box_px": None if self.box_px is None else [round(float(v), 3) for v in self.box_px],
             "box_m": None if self.box_m is None else [round(float(v), 5) for v in self.box_m]}
        if self.range is not None:
            m.update(self.range.meta())
        return m

    def with_focus(self, est: RangeEstimate | None, min_quality: float) -> "RoiResult":
        """Fold the focus factor into the quality; a face too far out of focus is reported as no face."""
        if est is None or not self.found:
            return replace(self, range=est)
        q = self.quality * est.focus
        if q < min_quality:
            return RoiResult(False, None, self.box_px, self.box_m, q,
                             f"out of focus: {est.describe()}; quality {q:.2f} below "
                             f"processing.roi_min_quality={min_quality}", est)
        return replace(self, quality=q, range=est)


def resize_bicubic(img: np.ndarray, box_px: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Resample the box (row0, col0, rows, cols) of a float image to (size, size), PIL bicubic."""
    r0, c0, h, w = box_px
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    out = im.resize((size, size), Image.Resampling.BICUBIC, box=(c0, r0, c0 + w, r0 + h))
    return np.asarray(out, dtype=np.float32)


def normalise_roi(db_roi: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """dB ROI -> [0, 1]: percentile min-max, clipped. A flat ROI maps to all zeros."""
    lo, hi = np.percentile(db_roi, [low_pct, high_pct])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-9:
        return np.zeros_like(db_roi, dtype=np.float32)
    return np.clip((db_roi - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


class FaceLocator:
    """Finds the head and cuts the normalised ROI, for one scanner geometry and processing config."""

    def __init__(self, scanner: ScannerConfig, config: ProcessingConfig | None = None) -> None:
        self.config = config or ProcessingConfig()
        ra = scanner.raster
        self.pitch_x, self.pitch_y = ra.pixel_pitch_x_m, ra.pixel_pitch_y_m
        self.fov_x, self.fov_y = ra.fov_x_m, ra.fov_y_m
        self.shape = (ra.lines_per_frame, ra.samples_per_line)
        c = self.config
        self.box_cols = c.roi_width_m / self.pitch_x
        self.box_rows = c.roi_height_m / self.pitch_y
        self.smooth = (max(1, round(0.02 / self.pitch_y)), max(1, round(0.02 / self.pitch_x)))
        self.min_area_px = 0.05 * HEAD_AREA_M2 / (self.pitch_x * self.pitch_y)
        # grouping element: an ellipse of radius roi_glint_merge_m in physical units
        ry = max(1, round(c.roi_glint_merge_m / self.pitch_y))
        rx = max(1, round(c.roi_glint_merge_m / self.pitch_x))
        yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        self.group_element = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0
        self._group_rows = row_half_widths(self.group_element)   # an ellipse: every row one centred run

    def to_db(self, frame: np.ndarray, scale: str) -> np.ndarray:
        if scale == "db":
            return frame.astype(np.float32, copy=False)
        return (10.0 * np.log10(np.maximum(frame, 0.0) + self.config.power_floor)).astype(np.float32)

    def _no_face(self, reason: str, quality: float = 0.0, box_px=None, box_m=None) -> RoiResult:
        return RoiResult(False, None, box_px, box_m, quality, reason)

    def locate(self, frame: np.ndarray, scale: str = "db") -> RoiResult:
        """Find the head in `frame` (rows = lines, columns = fast-axis samples) and cut the ROI."""
        c = self.config
        if frame.ndim != 2 or frame.shape[0] < 4 or frame.shape[1] < 8:
            raise ValueError(f"frame must be 2-D (lines, samples) of at least 4 x 8, got {frame.shape}")
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from the scanner's {self.shape}")
        db = self.to_db(frame, scale)
        if not np.all(np.isfinite(db)):
            return self._no_face("frame holds NaN or inf")
        # smoothed in power, not in dB, so a beam-sized glint spreads over the box instead of averaging away
        sm = 10.0 * np.log10(ndimage.uniform_filter(10.0 ** (db.astype(np.float64) / 10.0), size=self.smooth,
                                                    mode="nearest"))
        bg = float(np.percentile(sm, 20))
        bright = sm > bg + c.roi_threshold_db
        if not bright.any():
            return self._no_face(f"no region brighter than background {bg:.1f} dB + {c.roi_threshold_db} dB")
        # glints of one face (forehead, nose, lips, chin, cheekbones: a few cm apart) are grouped by
        # dilating them with an ellipse of radius roi_glint_merge_m
        grouped = dilate_rows(bright, self._group_rows)   # = ndimage.binary_dilation(bright, group_element)
        labels, n = ndimage.label(grouped)
        energy = ndimage.sum(np.where(bright, 10.0 ** ((sm - bg) / 10.0), 0.0), labels, index=np.arange(1, n + 1))
        k = int(np.argmax(energy)) + 1
        group = labels == k
        region = group & bright
        size = int(region.sum())
        if size < self.min_area_px:
            return self._no_face(f"brightest group of glints covers {size} px; a head needs "
                                 f">= {self.min_area_px:.0f} px")
        rows = np.nonzero(region.any(axis=1))[0]
        top = int(rows[0])
        # a head seen whole (diffuse returns above the threshold) shows its crown; a head seen only by
        # its glints shows the forehead or brow first, roi_glint_crown_offset_m below the crown
        seen_whole = float(bright[group].mean()) > 0.5
        crown_offset = 0.0 if seen_whole else c.roi_glint_crown_offset_m / self.pitch_y
        if not seen_whole and ndimage.label(region)[1] < 2:
            return self._no_face("a single bright spot: a face seen by its glints shows at least two")
        head_rows = max(1, int(round(HEAD_HEIGHT_M / self.pitch_y)))
        sub = region[top:top + head_rows]
        col_centre = float(np.nonzero(sub)[1].mean()) + 0.5  # pixel centres are at j + 0.5
        # box in fractional pixel edges
        row0 = top - crown_offset - c.roi_head_top_margin_m / self.pitch_y
        col0 = col_centre - 0.5 * self.box_cols
        want = (row0, col0)
        row0 = float(np.clip(row0, 0.0, self.shape[0] - self.box_rows))
        col0 = float(np.clip(col0, 0.0, self.shape[1] - self.box_cols))
        box_px = (row0, col0, float(self.box_rows), float(self.box_cols))
        box_m = (-0.5 * self.fov_x + col0 * self.pitch_x, 0.5 * self.fov_y - row0 * self.pitch_y,
                 c.roi_width_m, c.roi_height_m)
        # quality
        r_a, r_b = int(np.floor(row0)), int(np.ceil(row0 + self.box_rows))
        c_a, c_b = int(np.floor(col0)), int(np.ceil(col0 + self.box_cols))
        in_box = region[r_a:r_b, c_a:c_b]
        contrast = float(np.clip((np.median(sm[r_a:r_b, c_a:c_b][in_box]) - bg) / (2 * c.roi_threshold_db), 0, 1))
        # a whole head fills about half the box; a face's glints, grouped, a third
        coverage = float(np.clip(group[r_a:r_b, c_a:c_b].mean() / 0.35, 0, 1))
        containment = 1.0
        if top == 0:
            containment *= 0.5
        if abs(col0 - want[1]) > 0.1 * self.box_cols or abs(row0 - want[0]) > 0.1 * self.box_rows:
            containment *= 0.75
        quality = contrast * coverage * containment
        if quality < c.roi_min_quality:
            return self._no_face(f"quality {quality:.2f} below processing.roi_min_quality={c.roi_min_quality} "
                                 f"(contrast {contrast:.2f}, coverage {coverage:.2f}, containment {containment:.2f})",
                                 quality, box_px, box_m)
        roi_db = resize_bicubic(db, box_px, c.roi_size)
        image = normalise_roi(roi_db, c.roi_norm_low_pct, c.roi_norm_high_pct)
        return RoiResult(True, image, box_px, box_m, quality, "")


def extract_face_roi(frame, scanner: ScannerConfig, config: ProcessingConfig | None = None,
                     scale: str = "db") -> RoiResult:
    """One-call form of FaceLocator(scanner, config).locate; `frame` is an array in `scale`
    or a ProcessedFrame (its image and scale are used)."""
    if hasattr(frame, "image") and hasattr(frame, "scale"):
        frame, scale = frame.image, frame.scale
    return FaceLocator(scanner, config).locate(np.asarray(frame), scale)

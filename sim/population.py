"""A seeded population of head phantoms: stable anatomical shape and albedo parameters per identity.

Each parameter is drawn as mean + s(difficulty) * sd * z with z ~ N(0, 1) clipped to +-2.5, from a
generator seeded by (population_seed, identity), so an identity does not depend on how many others
exist. s(difficulty) = 2.2 - 1.6 * difficulty scales the spread between identities (difficulty 0:
2.2 sd, very distinct; 0.5: 1.4 sd; 1: 0.6 sd, barely resolvable at 1.5 cm). Population means and spreads are
of adult heads (head breadth ~15 cm, height ~22 cm, nose projection ~2.4 cm).
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

# name: (mean, sd) in metres unless marked; positions are relative to the head-ellipsoid centre,
# y up, x towards the subject's left.
SHAPE_STATS: dict[str, tuple[float, float]] = {
    "head_half_width": (0.074, 0.005),      # ellipsoid semi-axis x
    "head_half_height": (0.110, 0.006),     # semi-axis y
    "head_half_depth": (0.096, 0.006),      # semi-axis z
    "crown_taper": (0.0, 0.07),             # (1) relative widening of the top vs the bottom
    "face_flatness": (0.35, 0.10),          # (1) flattening of the front of the ellipsoid
    "forehead_fullness": (0.004, 0.003),    # forehead cap in front of the skull ellipsoid
    "brow_y": (0.030, 0.004),
    "brow_projection": (0.003, 0.0015),
    "eye_y": (0.012, 0.004),
    "eye_half_spacing": (0.032, 0.0025),
    "eye_socket_depth": (0.012, 0.003),
    "nose_length": (0.050, 0.005),
    "nose_width": (0.034, 0.004),
    "nose_projection": (0.024, 0.004),
    "cheekbone_x": (0.050, 0.005),
    "cheekbone_projection": (0.007, 0.003),
    "mouth_drop": (0.022, 0.003),           # nose tip to mouth line
    "mouth_width": (0.050, 0.005),
    "lip_projection": (0.008, 0.003),
    "chin_drop": (0.035, 0.004),            # mouth line to chin point
    "chin_projection": (0.010, 0.004),
    "jaw_width": (0.86, 0.06),              # (1) width at the jaw relative to the head width
    "ear_height": (0.060, 0.006),
    "ear_protrusion": (0.018, 0.005),
    "hairline_y": (0.065, 0.012),
    "hair_thickness": (0.006, 0.004),       # adds to the skull at the top/back
}
# Widening of the shape model where real faces vary and the 26 parameters above could not say so
# (forehead inclination, nasal bridge, nose tip size and deviation, chin width, lower cheeks,
# left-right asymmetry): these set which way the forehead, nose and chin face, i.e. where the
# glints fall. Drawn from their own stream so the parameters above keep their values.
SHAPE_EXTRA_STATS: dict[str, tuple[float, float]] = {
    "forehead_slope": (0.0, 0.08),          # (1) extra backward recession of the forehead per unit height
    "nasal_bridge": (0.003, 0.0015),        # projection of the nose at the nasion
    "nose_tip_radius": (0.007, 0.0015),     # vertical half-size of the tip
    "nose_deviation": (0.0, 0.0015),        # sideways offset of the nose (x)
    "chin_width": (0.022, 0.004),
    "cheek_fullness": (0.002, 0.002),       # lower cheeks beside the mouth
    "asymmetry": (0.0, 0.0015),             # cheekbone projection added on the left, taken on the right
}
ALBEDO_STATS: dict[str, tuple[float, float]] = {
    "skin_albedo": (0.62, 0.13),    # (1) visible grey level of skin
    "hair_albedo": (0.22, 0.12),
    "lip_albedo": (0.80, 0.06),     # relative to skin
    "brow_albedo": (0.55, 0.12),    # relative to skin
}
_CLIP_Z = 2.5


class HeadShape(BaseModel):
    """One identity's stable parameters (names and units in SHAPE_STATS / ALBEDO_STATS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: int
    head_half_width: float
    head_half_height: float
    head_half_depth: float
    crown_taper: float
    face_flatness: float
    forehead_fullness: float
    brow_y: float
    brow_projection: float
    eye_y: float
    eye_half_spacing: float
    eye_socket_depth: float
    nose_length: float
    nose_width: float
    nose_projection: float
    cheekbone_x: float
    cheekbone_projection: float
    mouth_drop: float
    mouth_width: float
    lip_projection: float
    chin_drop: float
    chin_projection: float
    jaw_width: float
    ear_height: float
    ear_protrusion: float
    hairline_y: float
    hair_thickness: float
    forehead_slope: float = SHAPE_EXTRA_STATS["forehead_slope"][0]
    nasal_bridge: float = SHAPE_EXTRA_STATS["nasal_bridge"][0]
    nose_tip_radius: float = SHAPE_EXTRA_STATS["nose_tip_radius"][0]
    nose_deviation: float = SHAPE_EXTRA_STATS["nose_deviation"][0]
    chin_width: float = SHAPE_EXTRA_STATS["chin_width"][0]
    cheek_fullness: float = SHAPE_EXTRA_STATS["cheek_fullness"][0]
    asymmetry: float = SHAPE_EXTRA_STATS["asymmetry"][0]
    skin_albedo: float
    hair_albedo: float
    lip_albedo: float
    brow_albedo: float

    def vector(self) -> np.ndarray:
        """The shape parameters as a vector (SHAPE_STATS then SHAPE_EXTRA_STATS order), for distances."""
        return np.array([getattr(self, k) for k in (*SHAPE_STATS, *SHAPE_EXTRA_STATS)])


def _positive(name: str, value: float) -> float:
    """Keep lengths and projections physical (non-negative; a little above zero)."""
    if name in ("crown_taper", "forehead_slope", "nose_deviation", "asymmetry"):
        return value
    mean = {**SHAPE_STATS, **SHAPE_EXTRA_STATS, **ALBEDO_STATS}.get(name, (1.0, 0.0))[0]
    return max(value, 0.1 * mean)


class Population:
    """Population(n_identities, population_seed, difficulty).identity(i) -> HeadShape."""

    def __init__(self, n_identities: int = 20, population_seed: int = 1234, difficulty: float = 0.5) -> None:
        if n_identities < 1:
            raise ValueError(f"{n_identities=} must be >= 1")
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"{difficulty=} must lie in [0, 1]")
        self.n_identities = int(n_identities)
        self.population_seed = int(population_seed)
        self.difficulty = float(difficulty)
        self._cache: dict[int, HeadShape] = {}

    @property
    def spread(self) -> float:
        """Scale of the between-identity spread in population sd units: 2.2 - 1.6 difficulty."""
        return 2.2 - 1.6 * self.difficulty

    def identity(self, i: int) -> HeadShape:
        if not 0 <= i < self.n_identities:
            raise ValueError(f"identity={i} outside the population of {self.n_identities} (0..{self.n_identities - 1})")
        if i not in self._cache:
            rng = np.random.default_rng([self.population_seed, int(i), 0x5EED])
            vals: dict[str, float | int] = {"identity": int(i)}
            for name, (mean, sd) in SHAPE_STATS.items():
                z = float(np.clip(rng.standard_normal(), -_CLIP_Z, _CLIP_Z))
                vals[name] = _positive(name, mean + self.spread * sd * z)
            for name, (mean, sd) in ALBEDO_STATS.items():
                z = float(np.clip(rng.standard_normal(), -_CLIP_Z, _CLIP_Z))
                vals[name] = float(np.clip(mean + sd * z, 0.05, 0.95))
            extra = np.random.default_rng([self.population_seed, int(i), 0x5EED, 2])
            for name, (mean, sd) in SHAPE_EXTRA_STATS.items():
                z = float(np.clip(extra.standard_normal(), -_CLIP_Z, _CLIP_Z))
                vals[name] = _positive(name, mean + self.spread * sd * z)
            self._cache[i] = HeadShape(**vals)
        return self._cache[i]

    def __len__(self) -> int:
        return self.n_identities

    def __iter__(self):
        return (self.identity(i) for i in range(self.n_identities))

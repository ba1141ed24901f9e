"""Labels shared by sim, datasets, training and inference (index order is part of every model)."""
from __future__ import annotations

# The paper's five head postures, as head yaw seen from the scanner (deg, + = subject turns to their left).
POSTURES: tuple[str, ...] = ("front-left", "front-center", "front-right", "full-left", "full-right")
POSTURE_YAW_DEG: dict[str, float] = {
    "front-left": 30.0, "front-center": 0.0, "front-right": -30.0, "full-left": 90.0, "full-right": -90.0,
}
MODALITIES: tuple[str, ...] = ("thz", "visible")
SPLITS: tuple[str, ...] = ("train", "val", "test")


def posture_index(name: str) -> int:
    try:
        return POSTURES.index(name)
    except ValueError:
        raise ValueError(f"unknown posture {name!r}; expected one of {POSTURES}") from None


def parse_identity_list(spec: str) -> list[int]:
    """'80-99' or '0,3,5-7' -> sorted identity ids; ValueError naming the bad part."""
    ids: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{part!r} is neither an identity id nor a range like 80-99") from None
        if a < 0 or b < a:
            raise ValueError(f"{part!r}: ids are >= 0 and a range runs low-high")
        ids.update(range(a, b + 1))
    return sorted(ids)

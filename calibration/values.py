"""A fitted value with its 1-sigma uncertainty and unit, and a pass/fail check against a specification."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Measured(BaseModel):
    """value +- uncertainty (1 sigma, same unit); uncertainty is NaN-free: 0 means 'exact or not estimated'.

    The value must be finite (records are strict JSON): a quantity that could not be determined is
    left out of the record, not stored as NaN.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float
    uncertainty: float = Field(0.0, ge=0.0)
    unit: str = ""

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"a measured value must be finite, got {v!r}; leave an undetermined value out")
        return v

    @staticmethod
    def finite(value: float) -> bool:
        return math.isfinite(float(value))

    @classmethod
    def of(cls, value: float, uncertainty: float = 0.0, unit: str = "") -> "Measured":
        u = float(uncertainty)
        if not math.isfinite(u):
            u = 0.0
        return cls(value=float(value), uncertainty=abs(u), unit=unit)

    def __str__(self) -> str:
        return f"{self.value:.4g} +- {self.uncertainty:.2g} {self.unit}".rstrip()


class Check(BaseModel):
    """One item compared with its specification: passes when `low <= value <= high`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    value: float | None = Field(description="None: the item could not be measured (it fails)")
    unit: str = ""
    low: float | None = None
    high: float | None = None
    spec: str = Field("", description="the specification in words, e.g. '1.5 cm +- 15 %'")
    passed: bool

    @classmethod
    def within(cls, name: str, value: float | None, unit: str, low: float | None, high: float | None,
               spec: str) -> "Check":
        if value is None or not math.isfinite(value):
            return cls(name=name, value=None, unit=unit, low=low, high=high, spec=spec, passed=False)
        ok = (low is None or value >= low) and (high is None or value <= high)
        return cls(name=name, value=float(value), unit=unit, low=low, high=high, spec=spec, passed=bool(ok))

    @classmethod
    def relative(cls, name: str, value: float, unit: str, spec_value: float, tol_rel: float) -> "Check":
        return cls.within(name, value, unit, spec_value * (1 - tol_rel), spec_value * (1 + tol_rel),
                          f"{spec_value:.4g} {unit} +- {tol_rel * 100:.0f} %")

    @classmethod
    def absolute(cls, name: str, value: float, unit: str, spec_value: float, tol: float) -> "Check":
        return cls.within(name, value, unit, spec_value - tol, spec_value + tol, f"{spec_value:.4g} +- {tol:.3g} {unit}")

    @classmethod
    def at_most(cls, name: str, value: float, unit: str, limit: float) -> "Check":
        return cls.within(name, value, unit, None, limit, f"<= {limit:.4g} {unit}")

    @classmethod
    def at_least(cls, name: str, value: float, unit: str, limit: float) -> "Check":
        return cls.within(name, value, unit, limit, None, f">= {limit:.4g} {unit}")


Verdict = Literal["pass", "fail"]


def verdict(checks: list[Check]) -> Verdict:
    return "pass" if checks and all(c.passed for c in checks) else "fail"

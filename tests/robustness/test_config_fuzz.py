"""A seeded config fuzzer (hypothesis): every file is either valid and physically meaningful or refused with
a ConfigError naming the field, never another exception (issue 13, items 6 and 7)."""
from __future__ import annotations

import math


import pytest
from hypothesis import HealthCheck, given, seed, settings, strategies as st
from pydantic import BaseModel

from pipeline.settings import Settings, settings_from_dict
from thzcore.config import ConfigError, load_toml

ABSURD = st.one_of(
    st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")), st.just(True), st.just(False),
    st.just(0), st.just(-1), st.just(2**63), st.just(1e308), st.just(-1e-300), st.just(""), st.just("5"),
    st.just([1, 2]), st.just({"x": 1}), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2**70, max_value=2**70), st.text(max_size=8),
)


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


LEAVES = _leaves(Settings)


def _set(d: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


@st.composite
def configs(draw):
    d: dict = {}
    for path in draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=4)):
        _set(d, path, draw(ABSURD))
    return d


def _floats(model: BaseModel):
    for name in type(model).model_fields:
        v = getattr(model, name)
        if isinstance(v, BaseModel):
            yield from _floats(v)
        elif isinstance(v, float):
            yield name, v


@seed(13)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_fuzzed_configs_are_valid_and_meaningful_or_refused_with_the_field_named(data):
    try:
        s = settings_from_dict(data)
    except ConfigError as exc:
        text = str(exc)
        assert text and "Traceback" not in text
        named = [".".join(p) for p in LEAVES if ".".join(p) in text or p[-1] in text]
        assert named or "<root>" in text or ": " in text, text
        return
    for name, v in _floats(s):
        assert math.isfinite(v), f"{name}={v} accepted"
    assert s.scanner.raster.lines_per_frame >= 1
    assert s.processing.threads >= 1


ABSURD_CASES = [
    ("scanner.raster fast 1 Hz, slow 32 Hz", {"scanner": {"raster": {"fast_axis_hz": 1, "slow_axis_hz": 32}}},
     "fast_axis_hz"),
    ("acquisition.timeout_s = inf", {"acquisition": {"timeout_s": float("inf")}}, "acquisition.timeout_s"),
    ("calibration.exposure_limit_peak_mw_cm2 = inf", {"calibration": {"exposure_limit_peak_mw_cm2": float("inf")}},
     "calibration.exposure_limit_peak_mw_cm2"),
    ("processing.threads = 0", {"processing": {"threads": 0}}, "processing.threads"),
    ("acquisition.timeout_s = true", {"acquisition": {"timeout_s": True}}, "timeout_s"),
    ("acquisition.park_y_m = nan", {"acquisition": {"park_y_m": float("nan")}}, "acquisition.park_y_m"),
    ("scanner.fmcw.samples_per_chirp = \"128\"", {"scanner": {"fmcw": {"samples_per_chirp": "128"}}},
     "samples_per_chirp"),
]


@pytest.mark.parametrize("case,data,field", ABSURD_CASES, ids=[c[0] for c in ABSURD_CASES])
def test_the_absurd_values_of_the_issue_are_refused_with_the_field_named(case, data, field, matrix):
    with pytest.raises(ConfigError) as ei:
        settings_from_dict(data)
    assert field in str(ei.value), str(ei.value)
    matrix.record("config (absurd values)", case, "refused, field named")


def test_non_utf8_and_deeply_nested_files_are_refused_with_the_file_named(tmp_path, matrix):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[acquisition]\ngalvo_port = "/dev/tty\xe9"\n')
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for path, what in ((bad, "not UTF-8"), (deep, "nested too deeply")):
        with pytest.raises(ConfigError, match=what) as ei:
            load_toml(path)
        assert str(path) in str(ei.value)
        matrix.record("config (files)", path.name, "refused, file named")
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path)  # a directory


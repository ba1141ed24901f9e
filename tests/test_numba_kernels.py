"""Every Numba kernel of the project releases the GIL, so a simulating or processing thread never stalls the others."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from numba.core.registry import CPUDispatcher

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "processing", "calibration", "dataset", "thzcore")


def _kernel_modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        if not (ROOT / pkg).is_dir():
            continue
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "numba" in path.read_text(encoding="utf-8", errors="ignore"):
                rel = path.relative_to(ROOT).with_suffix("")
                names.append(".".join(p for p in rel.parts if p != "__init__"))
    return names


@pytest.mark.parametrize("module", _kernel_modules())
def test_kernels_release_the_gil(module):
    mod = importlib.import_module(module)
    kernels = {name: obj for name, obj in vars(mod).items()
               if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__}
    held = sorted(name for name, k in kernels.items()
                  if not k.targetoptions.get("nogil") and not k.targetoptions.get("parallel"))
    assert not held, f"{module}: njit kernels without nogil=True: {held}"
    # parallel kernels keep the GIL: under Numba's default workqueue threading layer two threads
    # entering a parallel region at once abort the process (DESIGN.md), and the GIL serialises them.
    # A nogil twin is allowed only beside a GIL-holding one, named *_nogil, in a module that chooses
    # between them by threadsafe_layer() (tbb / omp), as processing.range_gate does.
    unsafe = sorted(name for name, k in kernels.items()
                    if k.targetoptions.get("parallel") and k.targetoptions.get("nogil")
                    and not (name.endswith("_nogil") and name.removesuffix("_nogil") in kernels
                             and callable(getattr(mod, "threadsafe_layer", None))))
    assert not unsafe, f"{module}: parallel kernels with nogil=True and no GIL-holding twin: {unsafe}"


def test_the_nogil_parallel_range_gate_runs_only_under_a_threadsafe_layer(monkeypatch):
    import processing.range_gate as rg
    import numpy as np
    x = np.zeros((2, 4, 16), np.int16)
    w = np.ones(16, np.float32)
    used = []
    for name in ("_range_gate_parallel", "_range_gate_parallel_nogil"):
        real = getattr(rg, name)
        monkeypatch.setattr(rg, name, lambda *a, _n=name, _r=real: (used.append(_n), _r(*a))[1])
    monkeypatch.setattr(rg, "threadsafe_layer", lambda: None)        # workqueue: the GIL-holding kernel
    rg.range_gate(x, w, 1, 3, parallel=True)
    monkeypatch.setattr(rg, "threadsafe_layer", lambda: "tbb")
    rg.range_gate(x, w, 1, 3, parallel=True)
    assert used == ["_range_gate_parallel", "_range_gate_parallel_nogil"]


def test_the_known_kernels_are_found():
    mods = _kernel_modules()
    assert "sim.receiver" in mods and "processing.range_gate" in mods

"""Evaluation protocols of `thz evaluate --protocol`, checked against where the data and the model came from.

A synthetic dataset is fixed by two seeds (`thz sim dataset`, recorded in its dataset.json / plan.json):
the population seed draws the people (identity i of one population seed is the same person in every
build), the capture seed draws every capture (pose, placement, noise). A model records the seeds of
the data it trained on (run config.json `dataset.plan`; a bundle's manifest `training_config.dataset`,
or for bundles exported before that field, `dataset` when no `training_*` hash says it differs).

    paper    the paper's protocol: the test split of the training data itself (same two seeds): one
             concealed + one unconcealed capture per identity and posture, capture-disjoint, the
             identities seen in training. This is what `thz evaluate --split test` on the training
             dataset has always measured.
    heldout  held-out captures: the people of the training population (same population seed), every
             capture drawn with a capture seed the training data did not use; all splits, restricted to
             the identities the model trained on.
    openset  new people and new captures: population seed AND capture seed both other than the
             training data's; every image; enrolled from the unconcealed scans, probed with the
             concealed ones (ROC AUC, EER, TAR@FAR 1% and 0.1%, rank-1 among the new people).

A protocol that does not fit the data (openset on the training population, heldout with the training
capture seed, paper on another build, a dataset or model without recorded seeds) is refused with a
ProtocolError naming the seeds and the fix; `thz` exits with code 2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOLS = ("paper", "heldout", "openset")

PROTOCOL_TITLES = {
    "paper": "the paper's protocol (test split of the training data: capture-disjoint, identities seen in training)",
    "heldout": "held-out captures (the training people, a capture seed never used in training)",
    "openset": "open set (new people and new captures: population and capture seeds never used in training)",
}


class ProtocolError(ValueError):
    """The protocol asked for does not fit the evaluated data or the model's training data."""


@dataclass(frozen=True)
class Seeds:
    """What fixes a synthetic dataset: capture seed, population seed, identity count, content hash."""

    seed: int | None
    population_seed: int | None
    n_identities: int | None = None
    content: str | None = None
    path: str = ""

    @property
    def known(self) -> bool:
        return self.seed is not None and self.population_seed is not None

    def describe(self) -> str:
        return (f"seed {self.seed}, population seed {self.population_seed}, {self.n_identities} identities"
                + (f", content {self.content}" if self.content else ""))


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def seeds_from_provenance(prov: dict | None) -> Seeds:
    """Seeds of a provenance dict (`ThzData.provenance()`, a run's config.json `dataset`, a manifest's)."""
    prov = prov if isinstance(prov, dict) else {}
    plan = prov.get("plan") if isinstance(prov.get("plan"), dict) else {}
    return Seeds(_int(plan.get("seed")), _int(plan.get("population_seed")), _int(plan.get("n_identities")),
                 prov.get("content_sha256_16") if isinstance(prov.get("content_sha256_16"), str) else None,
                 str(prov.get("path", "")))


def dataset_seeds(root: str | Path) -> Seeds:
    """Seeds of a dataset directory from dataset.json (the finished build) or plan.json (a build's plan)."""
    root = Path(root)
    for name in ("dataset.json", "plan.json"):
        try:
            raw = json.loads((root / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(raw, dict):
            continue
        if name == "plan.json":
            raw = {"plan": raw}
        s = seeds_from_provenance(raw | {"path": str(root)})
        if s.known:
            return s
    return Seeds(None, None, path=str(root))


def training_provenance(kind: str, path: str | Path, manifest: Any = None) -> dict | None:
    """The provenance of the data a run or bundle trained on (None when it was not recorded).

    Bundle: manifest.training_config["dataset"] (written by `thz export` since the protocols), else the
    manifest's `dataset` when no `training_*` hash marks it as another dataset than the training one.
    Run: config.json `dataset`.
    """
    if kind == "bundle":
        tc = manifest.training_config if manifest is not None else {}
        if isinstance(tc.get("dataset"), dict):
            return tc["dataset"]
        ds = manifest.dataset if manifest is not None else {}
        if any(k.startswith("training_") for k in ds):
            return None   # exported with another dataset than it trained on, and the training plan unrecorded
        return ds or None
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None


@dataclass
class ProtocolPlan:
    """A checked protocol: what to evaluate and the provenance facts for the report."""

    name: str
    splits: tuple[str, ...]
    identities: list[int] | None          # None = every identity of the dataset
    evaluated: Seeds
    training: Seeds
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return PROTOCOL_TITLES[self.name]

    def to_json(self) -> dict:
        return {"protocol": self.name, "title": self.title, "splits": list(self.splits),
                "identities": self.identities, "evaluated": self.evaluated.__dict__,
                "training": self.training.__dict__, "notes": self.notes}


def _trained_identities(training: Seeds, heldout: list[int]) -> list[int] | None:
    if training.n_identities is None:
        return None
    return [i for i in range(training.n_identities) if i not in set(heldout)]


def resolve(name: str, data_root: str | Path, present_identities: np.ndarray, training: dict | None,
            heldout: list[int], model: str) -> ProtocolPlan:
    """Check protocol `name` against the evaluated dataset and the model's training data; ProtocolError if unfit."""
    if name not in PROTOCOLS:
        raise ProtocolError(f"protocol {name!r}: choose from {', '.join(PROTOCOLS)}")
    ev = dataset_seeds(data_root)
    tr = seeds_from_provenance(training)
    if not ev.known:
        raise ProtocolError(f"--protocol {name}: {data_root} records no seeds (no dataset.json or plan.json of "
                            "`thz sim dataset`), so whether its people and captures are new to the model cannot be "
                            "checked; evaluate it with --split instead")
    if not tr.known:
        raise ProtocolError(f"--protocol {name}: {model} does not record the seeds of its training data; re-export "
                            "the bundle with `thz export RUN` (it records them), or evaluate with --split")
    same_people, same_captures = ev.population_seed == tr.population_seed, ev.seed == tr.seed
    fix_open = (f"rebuild with `thz sim dataset --population-seed P --seed S` (P != {tr.population_seed}, "
                f"S != {tr.seed})")
    notes: list[str] = []
    present = sorted(int(i) for i in np.unique(present_identities))
    trained = _trained_identities(tr, heldout)
    identities: list[int] | None = None
    if name == "paper":
        if not (same_people and same_captures):
            raise ProtocolError(f"--protocol paper evaluates the test split of the training data, but {data_root} "
                                f"was built with seed {ev.seed}, population seed {ev.population_seed} and the model "
                                f"trained on seed {tr.seed}, population seed {tr.population_seed}: use --protocol "
                                + ("heldout" if same_people else "openset"))
        if tr.content and ev.content and tr.content != ev.content:
            notes.append(f"rebuilt: content hash {ev.content} differs from the training data's {tr.content} "
                         "(same seeds; code changed between the builds)")
        splits: tuple[str, ...] = ("test",)   # the run's held-out identities are moved out of it by hold_out
    elif name == "heldout":
        if not same_people:
            raise ProtocolError(f"--protocol heldout needs the training people (population seed "
                                f"{tr.population_seed}), {data_root} holds population seed {ev.population_seed}: "
                                "that is --protocol openset")
        if same_captures:
            raise ProtocolError(f"--protocol heldout needs captures the model never saw, but {data_root} was built "
                                f"with the training capture seed {tr.seed}; rebuild it with `thz sim dataset "
                                f"--seed S` (S != {tr.seed})")
        splits = ("train", "val", "test")
        if trained is not None:
            identities = [i for i in present if i in set(trained)]
            if not identities:
                raise ProtocolError(f"--protocol heldout: {data_root} holds none of the {len(trained)} identities "
                                    "the model trained on")
            if len(identities) < len(present):
                notes.append(f"restricted to the {len(identities)} trained identities (the dataset has "
                             f"{len(present)}; the others are unseen people of the training population)")
    else:  # openset
        if same_people:
            raise ProtocolError(f"--protocol openset needs people the model never saw, but {data_root} was built "
                                f"with the training population seed {tr.population_seed}: {fix_open} (unseen "
                                "identities of the training population: --split all --identities)")
        if same_captures:
            raise ProtocolError(f"--protocol openset needs new captures too, but {data_root} was built with the "
                                f"training capture seed {tr.seed}: {fix_open}")
        splits = ("train", "val", "test")
    if len(identities if identities is not None else present) < 2:
        raise ProtocolError(f"--protocol {name}: fewer than 2 identities to evaluate in {data_root}")
    return ProtocolPlan(name, splits, identities, ev, tr, notes)


def check_fit_data(plan: ProtocolPlan, fit_root: str | Path | None) -> list[str]:
    """Notes on the baselines' fit set (`--fit-data`); ProtocolError when it would fit on the evaluated people.

    The baselines are meant to be fitted on the train split of the model's own training data. Heldout
    and openset evaluate every image, so they need --fit-data.
    """
    if fit_root is None:
        if plan.name != "paper":
            raise ProtocolError(f"--protocol {plan.name} --baselines evaluates every image: give --fit-data DIR, the "
                                f"model's training data ({plan.training.path or 'its path is not recorded'}), to fit "
                                "PCA / LDA / posture NN on its train split")
        return []
    fit = dataset_seeds(fit_root)
    if plan.name == "openset" and fit.known and fit.population_seed == plan.evaluated.population_seed:
        raise ProtocolError(f"--fit-data {fit_root} holds the evaluated people (population seed "
                            f"{fit.population_seed}): the open-set baselines must not be fitted on them; give the "
                            "model's training data")
    if fit.known and (fit.seed, fit.population_seed) == (plan.training.seed, plan.training.population_seed):
        return []
    return [f"the baselines and the network's cohort are fitted on {fit_root} ({fit.describe() if fit.known else 'seeds unknown'}), not on the "
            f"model's training data ({plan.training.describe()})"]


def infer_protocol(split: str, data_root: str | Path, training: dict | None) -> str | None:
    """The protocol a plain `--split` evaluation amounts to, when the seeds tell (for the report's label)."""
    ev, tr = dataset_seeds(data_root), seeds_from_provenance(training)
    if not (ev.known and tr.known):
        return None
    same = (ev.seed, ev.population_seed) == (tr.seed, tr.population_seed)
    if split == "test" and same:
        return "paper"
    if split == "all" and ev.population_seed == tr.population_seed and ev.seed != tr.seed:
        return "heldout"
    if split == "all" and ev.population_seed != tr.population_seed and ev.seed != tr.seed:
        return "openset"
    return None

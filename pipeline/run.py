"""`thz run`: the --sim session (enrol, scan concealed, verify, summarise, report) and the hardware run."""
from __future__ import annotations

import queue
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from inference.engines.base import Engine
from inference.gallery import Gallery
from inference.quality import enrolment_refusal
from pipeline.collector import Collected
from pipeline.compose import JobConfigError, JobError, NoCleanResult, OnStep, Pipeline
from pipeline.report import RowSpool, write_report
from pipeline.settings import Settings
from pipeline.view import LiveView
from processing.calibration_model import ProcessingCalibration
from pipeline.summary import ScanRecord, percentile, stage_medians, summarise
from thzcore.logs import get_logger

log = get_logger(__name__)


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def subject_scene(identity: int, posture: str, concealed: bool, capture_seed: int) -> dict:
    """The scene JSON of population member `identity` in `posture` (the backdoor and SimRawSource take it)."""
    from sim.scene import Subject
    return Subject(identity=identity, posture=posture, concealed=concealed,
                   capture_seed=capture_seed).model_dump(mode="json")


def subject_id(identity: int) -> str:
    return f"sim-{identity:03d}"


# --- entry points ---------------------------------------------------------------------------------------
def run_sim(settings: Settings, engine: Engine, n_subjects: int = 4, postures: list[str] | None = None,
            scans_per_posture: int = 1, gallery_path: str | None = None, report_dir: str | None = None,
            seed: int | None = None, result_endpoint: str | None = None, scene_timeout_s: float = 60.0,
            raw_source: str = "emulator", view: LiveView | None = None, echo: Callable[[str], None] = _echo,
            calibration: ProcessingCalibration | None = None,
            identities: list[int] | None = None, repose_attempts: int = 3, repose_after_frames: int = 12,
            on_step: OnStep | None = None) -> dict:
    """Enrol, scan concealed, verify genuine + impostor claims, summarise, write the report.

    The subjects are population members 0..n_subjects-1, or `identities` when given (e.g. people the
    model never trained on). A pose in which no face is found within `repose_after_frames` raw frames
    is taken again with a new capture (the subject turns back to the scanner), up to `repose_attempts`
    times; a posture still without a face is a failure to acquire (counted in the summary, not scored).
    `on_step` sees each stage start (pipeline.compose.OnStep).
    """
    from thzcore.labels import POSTURES

    postures = list(postures or POSTURES)
    identities = sorted(set(identities)) if identities is not None else list(range(n_subjects))
    n_subjects = len(identities)
    if n_subjects < 2:
        raise JobConfigError(f"{n_subjects} subject(s): need at least 2 (each scan is also checked against an impostor)")
    outside = [i for i in identities if i >= settings.sim.n_identities]
    if outside:
        raise JobConfigError(f"identities {outside} are outside the simulated population of sim.n_identities="
                       f"{settings.sim.n_identities} (0..{settings.sim.n_identities - 1}): set [sim] n_identities = "
                       f"{max(outside) + 1} or more in the config file (each member is drawn from its own index, "
                       "so the others stay the same)")
    seed = settings.sim.seed if seed is None else seed
    rng = np.random.default_rng([seed, 0x5EED])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(report_dir) if report_dir else settings.inference.report_root / f"run-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    gpath = Path(gallery_path) if gallery_path else out_dir / "gallery.sqlite"
    records: list[ScanRecord] = []
    spool = RowSpool(out_dir / ".scans.rows.html")
    failures: list[dict] = []
    t0 = time.time()
    info: dict[str, Any] = {"engine": engine.name, "model_id": engine.model_id, "preset": engine.bundle.manifest.preset,
                            "threshold": engine.bundle.verify_threshold,
                            "verification_rule": engine.bundle.rule_name,
                            "subjects": ", ".join(map(subject_id, identities)),
                            "postures": ",".join(postures),
                            "gallery": str(gpath), "seed": seed, "scanner_id": settings.scanner.scanner_id}
    interrupted = False
    pipe = Pipeline(settings, engine, sim=True, gallery_path=gpath, result_endpoint=result_endpoint,
                    seed=seed, raw_source=raw_source, view=view, calibration=calibration, on_step=on_step)
    try:
        with pipe:
            info["raw_source"] = "emulator+acquisition" if pipe.emulator is not None else "virtual scanner (direct)"
            echo(f"pipeline up: {info['raw_source']} -> processing -> {engine.name} -> results at "
                 f"{pipe.stage.bound_endpoint}")
            # 1) enrolment from unconcealed scans, the posture told by the operator (the scene)
            def acquire(i: int, p: str, concealed: bool, n: int, enrol: bool = False) -> list[Collected]:
                """Scan a pose; when no face shows (or, to enrol, the ROI is below the quality gate), the
                subject faces the scanner again (a new capture), up to `repose_attempts` times; then the
                posture counts as a failure to acquire."""
                for _ in range(repose_attempts):
                    scene = subject_scene(i, p, concealed, int(rng.integers(1 << 31)))
                    try:
                        got = pipe.clean_results(scene, n, scene_timeout_s, max_frames=repose_after_frames)
                        why = enrolment_refusal(got[0].msg.meta, settings.inference.enroll_min_quality) if enrol else None
                        if why is None:
                            return got
                        raise NoCleanResult(why)
                    except NoCleanResult as exc:
                        log.info("no face in this pose; re-posing", extra={"subject": subject_id(i), "posture": p,
                                                                          "concealed": concealed, "why": str(exc)})
                failures.append({"subject": subject_id(i), "posture": p, "concealed": concealed})
                echo(f"no face: {subject_id(i)} {p} {'concealed' if concealed else 'unconcealed'} "
                     f"after {repose_attempts} poses (failure to acquire)")
                return []

            def mode(m: str, detail: str) -> None:
                if view is not None:
                    view.on_mode(m, detail)

            with Gallery(gpath, engine.model_id, engine.bundle.manifest.embedding_size) as gallery:
                for i in identities:
                    enrolled = 0
                    for p in postures:
                        mode("enrolling", f"{subject_id(i)}, {p}, unconcealed")
                        got = acquire(i, p, False, 1, enrol=True)
                        if not got:
                            continue
                        roi = got[0].roi
                        if roi is None:
                            raise JobError(f"no ROI image for frame {got[0].msg.frame_id} (collector missed it)")
                        emb = engine.infer(roi)["embedding"][0]
                        gallery.enroll(subject_id(i), emb, p, source=f"sim:{got[0].msg.frame_id}",
                                       frame_id=got[0].msg.frame_id)
                        enrolled += 1
                    echo(f"enrolled {subject_id(i)}: {enrolled} postures (unconcealed)")
            info["enrolment_s"] = round(time.time() - t0, 1)
            # 2) concealed scans, genuine + one impostor claim each
            total = n_subjects * len(postures) * scans_per_posture
            for i in identities:
                for p in postures:
                    impostor = identities[(identities.index(i) + 1 + int(rng.integers(n_subjects - 1))) % n_subjects]
                    claims = [subject_id(i), subject_id(impostor)]
                    pipe.stage.set_claims(claims)
                    mode("verifying", f"{subject_id(i)}, {p}, concealed: claims {claims[0]} (genuine) and "
                                      f"{claims[1]} (impostor); identifying against the gallery")
                    for c in acquire(i, p, True, scans_per_posture):
                        r = _record(c, subject_id(i), p, claims[1])
                        spool.add(r)  # the images go to disk now; the record keeps the numbers
                        r.roi = r.reconstruction = None
                        records.append(r)
                        echo(_progress(len(records), total, r))
            pipe.stage.set_claims([])
            mode("waiting", "session over")
            counters = pipe.stage.counters.to_json()
            frames = pipe.frames_acquired()
            proc_counters = pipe.processing.counters.to_json()
    except KeyboardInterrupt:
        interrupted = True
        echo("interrupted: all stages stopped; summary of the scans so far")
        counters, frames, proc_counters = (pipe.stage.counters.to_json() if pipe.stage else {}), \
            pipe.frames_acquired(), (pipe.processing.counters.to_json() if pipe.processing else {})
    summary = summarise(records, engine.bundle.verify_threshold)
    target = settings.inference.latency_target_ms
    p99 = summary.get("p99_latency_ms")
    summary.update(latency_target_ms=target, latency_within_target=None if p99 is None else bool(p99 <= target),
                   failures_to_acquire=len(failures),
                   failure_to_acquire_rate=len(failures) / (2 * n_subjects * len(postures)),  # enrolment + scans
                   raw_frames=frames, duration_s=round(time.time() - t0, 1), engine=engine.name,
                   model_id=engine.model_id, subjects=n_subjects, interrupted=interrupted,
                   inference_counters={k: counters.get(k) for k in ("received", "published", "dropped_malformed",
                                                                    "dropped_stale", "decision_errors")},
                   processing_counters={k: proc_counters.get(k) for k in ("received", "emitted", "faces", "no_face",
                                                                          "dropped_malformed")})
    spool.close()
    report = write_report_files(out_dir, summary, records, info, rows=spool.path)
    spool.path.unlink(missing_ok=True)
    summary["report"] = str(report)
    echo(_summary_text(summary))
    return summary


def write_report_files(out_dir: Path, summary: dict, records: list[ScanRecord], info: dict,
                       rows: Path | None = None) -> Path:
    return write_report(out_dir / "report.html", summary, records, info, rows=rows)


def _record(c: Collected, subject: str, posture: str, impostor: str) -> ScanRecord:
    m = c.meta
    v = {x.claim: x for x in m.verification}
    g, im = v.get(subject), v.get(impostor)
    return ScanRecord(
        frame_id=c.msg.frame_id, subject=subject, posture_true=posture, posture_pred=m.posture.name,
        posture_prob=max(m.posture.probabilities.values()),
        genuine_distance=g.distance if g else None, genuine_accepted=g.accepted if g else None,
        impostor_claim=impostor, impostor_distance=im.distance if im else None,
        impostor_accepted=im.accepted if im else None,
        identified=m.identification.identity if m.identification else None,
        latency_ms=m.scan_to_result_ms(),
        inference_ms=m.latency_ms.get("inference", float("nan")), errors=list(m.errors), roi=c.roi,
        stages_ms=m.stages_ms(),
        reconstruction=c.reconstruction)


def _progress(k: int, total: int, r: ScanRecord) -> str:
    ok = "ok" if r.posture_pred == r.posture_true else "WRONG"
    g = i = "-"
    if r.genuine_accepted is not None:
        g = f"{'accept' if r.genuine_accepted else 'REJECT'} {r.genuine_distance:.3f}"
    if r.impostor_accepted is not None:
        i = f"{'ACCEPT' if r.impostor_accepted else 'reject'} {r.impostor_distance:.3f}"
    return (f"[{k}/{total}] {r.subject} {r.posture_true:<12} concealed: posture {r.posture_pred} "
            f"({r.posture_prob:.2f}, {ok}); genuine {g}; impostor {r.impostor_claim} {i}; "
            f"id {r.identified}; {r.latency_ms:.0f} ms")


def _summary_text(s: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"
    return (f"summary: {s['frames']} concealed scans, {s['failures_to_acquire']} failures to acquire, "
            f"{s['raw_frames']} raw frames, {s['duration_s']} s\n"
            f"  posture accuracy       {pct(s['posture_accuracy'])}\n"
            f"  verification accuracy  {pct(s['verification_accuracy'])} over {s['claims']} claims "
            f"(genuine accepted {pct(s['genuine_accept_rate'])}, impostors rejected {pct(s['impostor_reject_rate'])})\n"
            f"  identification rank-1  {pct(s['identification_rank1'])}\n"
            f"  latency scan->result   p50 {ms(s['p50_latency_ms'])}, p99 {ms(s['p99_latency_ms'])}; "
            f"inference {ms(s['inference_ms_p50'])}\n"
            + ("  stages (p50)           " + ", ".join(f"{k.replace('_', ' ')} {ms(v)}"
                                                        for k, v in s["stage_p50_ms"].items()) + "\n"
               if s.get("stage_p50_ms") else "")
            + f"  report                 {s.get('report', '-')}")


def run_hardware(settings: Settings, engine: Engine, gallery_path: str | None = None, max_results: int | None = None,
                 result_endpoint: str | None = None, view: LiveView | None = None,
                 echo: Callable[[str], None] = _echo, calibration: ProcessingCalibration | None = None,
                 on_step: OnStep | None = None) -> dict:
    """Run the configured scanner until Ctrl-C (or max_results), printing each result."""
    lat: list[float] = []
    splits: list[dict[str, float]] = []
    n = 0
    t0 = time.time()
    interrupted = False
    pipe = Pipeline(settings, engine, sim=False, gallery_path=gallery_path, collect_rois=False,
                    result_endpoint=result_endpoint, view=view, calibration=calibration, on_step=on_step)
    try:
        with pipe:
            echo(f"running: results published at {pipe.stage.bound_endpoint}; Ctrl-C stops")
            if view is not None:
                view.on_mode("identifying", "every face 1:N against the gallery")
            while max_results is None or n < max_results:
                pipe.check_alive()
                try:
                    c = pipe.collector.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                n += 1
                lat.append(c.meta.scan_to_result_ms())
                splits.append(c.meta.stages_ms())
                ident = c.meta.identification.identity if c.meta.identification else None
                echo(f"frame {c.msg.frame_id}: posture {c.meta.posture.name} "
                     f"({max(c.meta.posture.probabilities.values()):.2f}) id {ident} {lat[-1]:.0f} ms")
    except KeyboardInterrupt:
        interrupted = True
    return {"frames": n, "posture_accuracy": None, "verification_accuracy": None,
            "p50_latency_ms": percentile(lat, 50), "p99_latency_ms": percentile(lat, 99),
            "stage_p50_ms": stage_medians(splits),
            "duration_s": round(time.time() - t0, 1), "interrupted": interrupted, "engine": engine.name,
            "model_id": engine.model_id}


__all__ = ["run_sim", "run_hardware", "subject_id", "subject_scene"]

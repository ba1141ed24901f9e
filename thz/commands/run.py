"""`thz run`, `thz enroll`, `thz verify`, `thz identify`: the main job and gallery decisions from the command line.

Each gallery command takes its ROIs from PNG files (--image, repeatable), an HDF5 raw recording
(--recording) or a live scan (--sim: the virtual scanner, or the configured hardware with --live).
Human-readable lines go to stderr; the last stdout line is a JSON summary.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from thz.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NEGATIVE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ThzError
from thzcore.logs import get_logger

log = get_logger(__name__)


def _settings(obj):
    return obj.settings if obj is not None else __import__("pipeline.settings", fromlist=["Settings"]).Settings()


def _engine(settings, bundle: str | None, engine: str | None, reconstruction: bool = False):
    from inference.bundle import load_bundle
    from inference.engines.choice import EngineUnavailable, make_engine

    path = bundle or settings.inference.bundle
    b = load_bundle(path)  # a BundleError reaches the CLI's one error path: an unusable input file (exit 4)
    try:
        return make_engine(b, engine or settings.inference.engine, settings.inference, reconstruction=reconstruction)
    except EngineUnavailable as exc:  # the engine asked for (option or inference.engine) cannot run here
        raise ThzError(str(exc), EXIT_USAGE) from None


def _rois(settings, images: tuple[str, ...], recording: str | None, sim: bool, live: bool, identity: int | None,
          posture: str | None, concealed: bool, scans: int, size: int):
    from pipeline.rois import live_rois, rois_from_image_files, rois_from_recording

    chosen = sum([bool(images), recording is not None, sim or live])
    if chosen != 1:
        raise click.UsageError("give exactly one source: --image PNG (repeatable), --recording H5, --sim or --live")
    if images:
        resize = bool(click.get_current_context().meta.get("thz.resize", False))
        return rois_from_image_files(list(images), settings, size, resize)
    if recording is not None:
        if not Path(recording).is_file():
            raise ThzError(f"recording {recording!r} does not exist", EXIT_INPUT)
        rois = list(rois_from_recording(recording, settings, limit=scans if scans > 0 else None))
        if not rois:
            raise ThzError(f"no face ROI found in {recording}", EXIT_INPUT)
        return rois
    if sim and identity is None:
        raise click.UsageError("--sim needs --identity N (the simulated subject in front of the scanner)")
    return live_rois(settings, sim=sim, identity=identity, posture=posture or "front-center", concealed=concealed,
                     n=max(scans, 1))


def _scan(obj, bundle, engine, images, recording, sim, live, identity, posture, concealed, scans):
    """Settings, engine, the ROIs of the chosen source and their network outputs with posture probabilities."""
    import numpy as np

    from thzcore.softmax import softmax

    s = _settings(obj)
    eng = _engine(s, bundle, engine)
    rois = _rois(s, images, recording, sim, live, identity, posture, concealed, scans, eng.bundle.input_size)
    out = eng.infer(np.stack([r.image for r in rois]))
    probs = softmax(out["posture_logits"])
    if s.inference.fusion_scans > 1:   # as the live stage: each ROI decides on the fusion of up to N (inference/fusion.py)
        from inference.fusion import fuse_sequence, roi_quality
        from thzcore.labels import POSTURES
        out["embedding"], used = fuse_sequence(out["embedding"], [POSTURES[int(p.argmax())] for p in probs],
                                               [roi_quality(r.meta) for r in rois], s.inference.fusion_scans,
                                               s.inference.fusion_weight)
        for r, idx in zip(rois, used):
            if len(idx) > 1:
                r.source += f" (fused with {len(idx) - 1} before)"
    return s, eng, rois, out, probs


def _source_options(f):
    opts = [
        click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
                     help="THz ROI image file (PNG or TIFF, grayscale, the bundle's input size: 64x64); repeatable"),
        click.option("--recording", type=click.Path(dir_okay=False), help="HDF5 raw recording to process"),
        click.option("--sim", is_flag=True, help="scan live with the virtual scanner"),
        click.option("--live", is_flag=True, help="scan live with the configured hardware"),
        click.option("--identity", type=int, default=None, help="--sim: population index of the subject"),
        click.option("--posture", default=None, help="--sim: posture to scan; enroll: posture to record "
                                                     "(default: the model's prediction)"),
        click.option("--concealed/--unconcealed", default=False, help="--sim: subject wears the balaclava"),
        click.option("--scans", type=int, default=1, show_default=True,
                     help="ROIs to use from a live scan or a recording (0 = every ROI of the recording)"),
        click.option("--bundle", default=None, help="model bundle directory (default: inference.bundle)"),
        click.option("--engine", type=click.Choice(["auto", "tensorrt", "onnxruntime"]), default=None),
        click.option("--gallery", default=None, help="gallery SQLite file (default: inference.gallery, else gallery.sqlite in the data directory)"),
        click.option("--resize", is_flag=True, expose_value=False,
                     callback=lambda ctx, _p, v: ctx.meta.__setitem__("thz.resize", v),
                     help="--image: resample images of another size to the model's input (refused otherwise)"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


class StartupProgress:
    """`thz run` starting: a tqdm bar on stderr, one step per stage as it starts (the model bundle and engine, then
    pipeline.compose.startup_steps), the stage's name beside the count; disabled with --no-progress."""

    def __init__(self, steps: list[str], enabled: bool = True) -> None:
        from tqdm import tqdm

        self.steps = ["model bundle and engine", *steps]
        self.bar = tqdm(total=len(self.steps), unit="stage", disable=not enabled, leave=True, dynamic_ncols=True,
                        bar_format="{desc} [{elapsed}]")
        self.step(0, "model bundle and engine")

    def step(self, k: int, label: str) -> None:
        self.bar.n = k
        self.bar.set_description_str(f"starting: {k}/{len(self.steps)} {label}")  # refreshes

    def pipeline_step(self, k: int, total: int, label: str) -> None:
        """pipeline.compose.OnStep: step k of the pipeline's `total` (k == total when all are up)."""
        if k >= total:
            self.step(len(self.steps), "pipeline up")
            self.close()
        else:
            self.step(1 + k, label)

    def close(self) -> None:
        self.bar.close()


def _open_gallery(settings, gallery: str | None, engine):
    from inference.gallery import Gallery
    path = Path(gallery).expanduser() if gallery else settings.inference.gallery_path
    return Gallery(path, engine.model_id, engine.bundle.manifest.embedding_size,
                   faiss_min_templates=settings.inference.faiss_min_templates,
                   search_threads=settings.inference.identify_threads)


@click.command("enroll")
@click.option("--subject", required=True, help="subject id to enrol")
@_source_options
@click.pass_obj
def enroll(obj, subject, images, recording, sim, live, identity, posture, concealed, scans, bundle, engine, gallery):
    """Enrol SUBJECT from unconcealed scans: one template per ROI, tagged with posture and model id."""
    from thzcore.labels import POSTURES

    if posture is not None and posture not in POSTURES:
        raise click.BadParameter(f"{posture!r} is not one of {POSTURES}", param_hint="--posture")
    s, eng, rois, out, probs = _scan(obj, bundle, engine, images, recording, sim, live, identity, posture, concealed,
                                     scans)
    from inference.quality import enrolment_refusal, quality_known

    gate = s.inference.enroll_min_quality
    refusals = [enrolment_refusal(r.meta, gate) for r in rois]
    for r, why in zip(rois, refusals):
        if why is not None:
            click.echo(f"not enrolled from {r.source}: {why}", err=True)
    n_refused = sum(why is not None for why in refusals)
    if n_refused == len(rois):
        raise ThzError(f"{subject} not enrolled: every ROI ({len(rois)}) below inference.enroll_min_quality="
                       f"{gate:g}; scan again", EXIT_REFUSED)
    added = []
    with _open_gallery(s, gallery, eng) as g:
        for r, e, p, why in zip(rois, out["embedding"], probs, refusals):
            if why is not None:
                continue
            pst = posture or POSTURES[int(p.argmax())]
            g.enroll(subject, e, pst, source=r.source, frame_id=r.frame_id)  # GalleryError: the CLI's table
            added.append(pst)
            note = "" if quality_known(r.meta) else " (quality unknown: no sidecar, not gated)"
            click.echo(f"enrolled {subject}: posture {pst} from {r.source}{note}", err=True)
        per_posture = g.templates_by_posture(subject)
    click.echo(json.dumps({"subject": subject, "templates_added": len(added), "refused_low_quality": n_refused,
                           "postures": per_posture, "model_id": eng.model_id}))


def _decide(kind: str, obj, claim, images, recording, sim, live, identity, posture, concealed, scans, bundle, engine,
            gallery, threshold):
    from thzcore.labels import POSTURES

    s, eng, rois, out, probs = _scan(obj, bundle, engine, images, recording, sim, live, identity, posture, concealed,
                                     scans)
    results = []
    with _open_gallery(s, gallery, eng) as g:
        for r, e, p in zip(rois, out["embedding"], probs):
            rec = {"source": r.source, "frame_id": r.frame_id, "posture": POSTURES[int(p.argmax())],
                   "posture_probability": round(float(p.max()), 4)}
            # a GalleryError goes to the CLI's table: not enrolled / empty gallery 2, a damaged or stale one 4
            if kind == "verify":
                t, by_posture, cohort = eng.bundle.verification_rule(rec["posture"])
                t = t if threshold is None else threshold
                v = g.verify(e, claim, t, frame_id=r.frame_id, source=r.source, posture=by_posture, cohort=cohort)
                rec.update(v.to_json())
                click.echo(f"{r.source}: claim {claim} {'ACCEPTED' if v.accepted else 'REJECTED'} "
                           f"(distance {v.distance:.4f}, threshold {t:.4f})", err=True)
            else:
                t = threshold if threshold is not None else (
                    s.inference.identify_threshold if s.inference.identify_threshold is not None
                    else eng.bundle.threshold)
                idn = g.identify(e, t, s.inference.top_k, frame_id=r.frame_id, source=r.source)
                rec.update(idn.to_json())
                best = ", ".join(f"{c}:{d:.4f}" for c, d in idn.candidates)
                click.echo(f"{r.source}: {'identified ' + idn.identity if idn.identity else 'REJECTED (unknown)'}"
                           f" [{best}]", err=True)
            results.append(rec)
    return eng, results


@click.command("verify")
@click.option("--claim", required=True, help="the subject id the person claims to be")
@click.option("--threshold", type=click.FloatRange(0.0, 2.0, min_open=True, max_open=True), default=None,
              help="cosine distance threshold in (0, 2) (default: the bundle's calibrated one)")
@_source_options
@click.pass_obj
def verify(obj, claim, threshold, images, recording, sim, live, identity, posture, concealed, scans, bundle, engine,
           gallery):
    """1:1 verification of --claim against its enrolled templates; exit 1 when any scan is rejected."""
    eng, results = _decide("verify", obj, claim, images, recording, sim, live, identity, posture, concealed, scans,
                           bundle, engine, gallery, threshold)
    accepted = all(r["accepted"] for r in results)
    click.echo(json.dumps({"claim": claim, "accepted": accepted, "scans": results, "model_id": eng.model_id}))
    sys.exit(EXIT_OK if accepted else EXIT_NEGATIVE)


@click.command("identify")
@click.option("--threshold", type=click.FloatRange(0.0, 2.0, min_open=True, max_open=True), default=None,
              help="open-set rejection distance in (0, 2) (default: "
                                                            "inference.identify_threshold, else the bundle's)")
@_source_options
@click.pass_obj
def identify(obj, threshold, images, recording, sim, live, identity, posture, concealed, scans, bundle, engine,
             gallery):
    """1:N identification against the gallery, rejecting unknown faces (open set); exit 1 when any scan is rejected."""
    eng, results = _decide("identify", obj, None, images, recording, sim, live, identity, posture, concealed, scans,
                           bundle, engine, gallery, threshold)
    identified = all(r["identity"] for r in results)
    click.echo(json.dumps({"identified": identified, "scans": results, "model_id": eng.model_id}))
    sys.exit(EXIT_OK if identified else EXIT_NEGATIVE)


@click.command("run")
@click.option("--sim", is_flag=True, help="run against the virtual scanner (emulated devices) instead of hardware")
@click.option("--subjects", type=int, default=None, help="--sim: simulated subjects to enrol and scan, population "
                                                          "members 0..N-1  [default: 4]")
@click.option("--identities", "identity_spec", default=None, metavar="LIST",
              help="--sim: which population members to enrol and scan instead, e.g. 80-83 or 3,7,12")
@click.option("--postures", default="all", show_default=True,
              help="--sim: comma-separated postures to scan concealed, or 'all'")
@click.option("--scans-per-posture", type=int, default=1, show_default=True,
              help="--sim: averaged results collected per subject and posture")
@click.option("--bundle", default=None, help="model bundle directory (default: inference.bundle)")
@click.option("--engine", type=click.Choice(["auto", "tensorrt", "onnxruntime"]), default=None)
@click.option("--gallery", default=None, help="gallery file (default for --sim: a fresh one in the report folder)")
@click.option("--reconstruction/--no-reconstruction", default=None,
              help="compute and publish reconstructions (default: on for --sim, inference.reconstruction otherwise)")
@click.option("--report", "report_dir", default=None, help="report folder (default: run-TIME in inference.report_dir, else in reports/ of the data directory)")
@click.option("--max-results", type=int, default=None, help="hardware: stop after this many results")
@click.option("--raw-source", type=click.Choice(["emulator", "direct"]), default="emulator", show_default=True,
              help="--sim: the device emulators read by the acquisition daemon (emulator), or the virtual scanner "
                   "publishing raw frames itself (direct)")
@click.option("--result-endpoint", default=None, help="where results are published (default: "
                                                      "inference.result_endpoint)")
@click.option("--view", is_flag=True, help="serve the live view on http://127.0.0.1:inference.view_port/")
@click.option("--view-port", "--port", "view_port", type=click.IntRange(0, 65535), default=None,
              help="loopback port of the live view (default: inference.view_port; 0: any free port); implies --view")
@click.option("--allow-stale-calibration", is_flag=True, help="use a stale calibration record (with a warning)")
@click.option("--no-progress", is_flag=True, help="no start-up progress bar on stderr")
@click.pass_obj
def run(obj, sim, subjects, identity_spec, postures, scans_per_posture, bundle, engine, gallery, reconstruction,
        report_dir, max_results, raw_source, result_endpoint, view, view_port, allow_stale_calibration, no_progress):
    """The main job: scanner -> acquisition -> processing -> inference -> results. Ctrl-C stops it all.

    With --sim: enrol the simulated subjects from unconcealed scans, scan each concealed in every
    posture, verify each scan against its true identity and one impostor claim, then print a
    summary, write an HTML report, and end with a JSON line.
    """
    from pipeline.run import run_hardware, run_sim
    from pipeline.prescan import prepare_scan
    from thzcore.labels import POSTURES, parse_identity_list

    identities = None
    if identity_spec is not None:
        if subjects is not None:
            raise click.UsageError("give --subjects N or --identities LIST, not both")
        try:
            identities = parse_identity_list(identity_spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--identities") from None
    from thzcore.netsec import check_bind
    st = _settings(obj)
    # refuse a public endpoint without CURVE now, not after the emulator and the daemon have started
    check_bind(result_endpoint or st.inference.result_endpoint, st.inference.curve_secret_key_file,
               st.inference.curve_clients_dir, "inference.result_endpoint")
    s, calibration = prepare_scan(st, allow_stale=allow_stale_calibration, sim=sim)
    if reconstruction is None:  # the sim report shows reconstructions; on hardware only when configured
        reconstruction = True if sim else s.inference.reconstruction
    from pipeline.compose import startup_steps
    progress = StartupProgress(startup_steps(sim, raw_source), enabled=not no_progress)
    try:
        eng = _engine(s, bundle, engine, reconstruction=reconstruction)
    except BaseException:
        progress.close()
        raise
    live = None
    if view or view_port is not None:
        from pipeline.view import LiveView
        port = s.inference.view_port if view_port is None else view_port
        try:
            live = LiveView(port=port, fault_after_s=s.inference.view_fault_after_s).start()
        except OSError as exc:  # the port is taken (or not ours to bind)
            progress.close()
            raise ThzError(f"live view: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); choose another "
                           "with --view-port N (0: any free port)", EXIT_USAGE) from None
        click.echo(f"live view: {live.url}", err=True)
    try:  # a JobError reaches the CLI's table: a stage that failed 5, a job that cannot run as asked 2
        if sim:
            plist = list(POSTURES) if postures == "all" else [p.strip() for p in postures.split(",") if p.strip()]
            bad = [p for p in plist if p not in POSTURES]
            if bad:
                raise click.BadParameter(f"{bad} not in {POSTURES}", param_hint="--postures")
            summary = run_sim(s, eng, n_subjects=subjects or 4, identities=identities, postures=plist,
                              scans_per_posture=scans_per_posture,
                              gallery_path=gallery, report_dir=report_dir, raw_source=raw_source,
                              result_endpoint=result_endpoint, view=live, calibration=calibration,
                              on_step=progress.pipeline_step)
        else:
            summary = run_hardware(s, eng, gallery_path=gallery, max_results=max_results,
                                   result_endpoint=result_endpoint, view=live, calibration=calibration,
                                   on_step=progress.pipeline_step)
    finally:
        progress.close()
        if live is not None:
            live.stop()
    click.echo(json.dumps(summary))
    if summary.get("interrupted"):
        sys.exit(EXIT_INTERRUPTED)  # Ctrl-C: every stage stopped, the summary so far printed; the shell's code for SIGINT

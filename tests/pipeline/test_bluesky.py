"""Bluesky: the ophyd-async face scanner (galvo + receiver) driven by a real RunEngine against the emulators; the
plan's event-model documents carry the decisions (the optional extra `bluesky`)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("bluesky")
pytest.importorskip("ophyd_async")

from bluesky import RunEngine  # noqa: E402
from ophyd_async.core import init_devices  # noqa: E402

from pipeline.run import subject_scene  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from sim.emulators.client import SimScanner  # noqa: E402
from tests.inference.conftest import bundle_dir  # noqa: E402,F401 - the tiny bundle, exported once per session

pytestmark = pytest.mark.integration  # the device emulators (a process), a pty and SCPI over TCP


@pytest.fixture(scope="module")
def emulator():
    s = Settings()
    with SimScanner.start(s, seed=3, realtime=False) as emu:
        emu.backdoor.set_scene(subject_scene(0, "front-center", False, 11))
        yield emu, emu.settings_for(s)


def _scanner(settings, bundle, gallery):
    """A RunEngine recording its documents, the FaceScanner devices on the emulators, and the engine."""
    from inference.bundle import load_bundle
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from pipeline.bluesky_scan import FaceScanner

    engine = OnnxRuntimeEngine(load_bundle(bundle), intra_op_threads=1)
    RE = RunEngine({})
    with init_devices():
        thz = FaceScanner(settings, engine, gallery, sim=True)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return RE, thz, docs, engine


def test_face_scan_plan_emits_start_descriptor_events_stop(emulator, bundle_dir, tmp_path):  # noqa: F811
    from pipeline.bluesky_scan import face_scan

    emu, settings = emulator
    RE, thz, docs, engine = _scanner(settings, bundle_dir, tmp_path / "g.sqlite")

    RE(face_scan(thz, num=1, mode="enroll", subject="sim-000"))
    (uid,) = RE(face_scan(thz, num=2, mode="verify", subject="sim-000", md={"operator": "test"}))
    RE(face_scan(thz, num=1))  # identify

    runs = [i for i, (n, _) in enumerate(docs) if n == "start"]
    assert len(runs) == 3
    names = [n for n, _ in docs[runs[1]:runs[2]]]
    assert names == ["start", "descriptor", "event", "event", "stop"]
    start, desc = docs[runs[1]][1], docs[runs[1] + 1][1]
    events = [d for n, d in docs[runs[1]:runs[2]] if n == "event"]
    stop = docs[runs[2] - 1][1]
    assert start["uid"] == uid and start["plan_name"] == "face_scan" and start["mode"] == "verify"
    assert start["subject"] == "sim-000" and start["operator"] == "test" and start["model_id"] == engine.model_id
    keys = desc["data_keys"]
    assert {"thz-decision", "thz-identity", "thz-distance", "thz-posture", "thz-roi_quality", "thz-frame_id",
            "thz-latency_ms", "thz-galvo-x", "thz-receiver-frame_no"} <= set(keys)
    assert keys["thz-decision"]["dtype"] == "string" and keys["thz-latency_ms"]["units"] == "ms"
    assert not any("embedding" in k or "roi_image" in k for k in keys)  # no biometric data in documents
    conf = desc["configuration"]
    assert conf["thz"]["data"]["thz-model_id"] == engine.model_id
    assert conf["thz"]["data"]["thz-galvo-idn"] and conf["thz"]["data"]["thz-receiver-idn"]
    assert conf["thz"]["data"]["thz-receiver-resource"] == settings.acquisition.receiver_resource
    assert set(desc["hints"]["thz"]["fields"]) == {"thz-decision", "thz-identity", "thz-distance"}
    for e in events:
        d = e["data"]
        assert d["thz-decision"] in ("accepted", "rejected") and d["thz-identity"] == "sim-000"
        assert 0 <= d["thz-distance"] <= 2 and d["thz-roi_quality"] > 0 and d["thz-posture"]
        assert d["thz-latency_ms"] > 0 and d["thz-frames"] >= 3 and not math.isnan(d["thz-galvo-x"])
    assert [e["seq_num"] for e in events] == [1, 2] and events[1]["data"]["thz-frame_id"] > events[0]["data"][
        "thz-frame_id"]
    assert stop["exit_status"] == "success" and stop["num_events"] == {"primary": 2}
    # enrol, then identify: the gallery the devices wrote is the one inference reads
    enrol = [d for n, d in docs[runs[0]:runs[1]] if n == "event"][0]["data"]
    assert enrol["thz-decision"] == "enrolled"
    ident = [d for n, d in docs[runs[2]:] if n == "event"][0]["data"]
    assert ident["thz-decision"] in ("identified", "unknown")
    from inference.gallery import Gallery
    with Gallery(tmp_path / "g.sqlite", engine.model_id) as g:
        kinds = [a["kind"] for a in g.audit_log(100)]
    assert kinds.count("enroll") == 1 and kinds.count("verify") == 2 and kinds.count("identify") == 1


def test_a_bad_mode_or_a_missing_subject_is_refused(emulator, bundle_dir, tmp_path):  # noqa: F811
    from inference.bundle import load_bundle
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from pipeline.bluesky_scan import FaceScanner, face_scan

    _, settings = emulator
    engine = OnnxRuntimeEngine(load_bundle(bundle_dir), intra_op_threads=1)
    RunEngine({})
    with init_devices():
        thz = FaceScanner(settings, engine, tmp_path / "g.sqlite", sim=True)
    with pytest.raises(ValueError, match="mode 'dance'"):
        next(face_scan(thz, mode="dance"))
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    from bluesky.utils import FailedStatus
    with pytest.raises((FailedStatus, ValueError)):
        RE(face_scan(thz, mode="verify"))  # no subject
    assert docs and docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"
    assert "needs a subject" in docs[-1][1]["reason"]


def test_an_enrolment_below_the_quality_gate_is_refused_in_the_event(emulator, bundle_dir, tmp_path):  # noqa: F811
    """inference.enroll_min_quality gates the plan's enrolment as every other: the event says so, nothing enrolled."""
    from inference.gallery import Gallery
    from pipeline.bluesky_scan import face_scan

    _, settings = emulator
    strict = settings.model_copy(update={"inference": settings.inference.model_copy(
        update={"enroll_min_quality": 1.0})})           # no real ROI scores 1: every enrolment is refused
    RE, thz, docs, engine = _scanner(strict, bundle_dir, tmp_path / "g.sqlite")
    RE(face_scan(thz, num=1, mode="enroll", subject="sim-000"))
    (event,) = [d["data"] for n, d in docs if n == "event"]
    assert event["thz-decision"] == "refused (low quality)" and 0 < event["thz-roi_quality"] < 1.0
    with Gallery(tmp_path / "g.sqlite", engine.model_id) as g:
        assert not g.has_templates() and [a["kind"] for a in g.audit_log(10)].count("enroll") == 0

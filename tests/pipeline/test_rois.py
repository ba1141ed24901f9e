"""ROIs from a live scan: `--live` reads the configured devices (here the emulator process standing in for them)."""
from __future__ import annotations

import pytest

from pipeline.rois import live_rois
from pipeline.settings import Settings
from sim.emulators.client import SimScanner
from sim.scene import Subject
from thzcore.netsec import LOCAL_ANY


@pytest.mark.integration
def test_live_rois_read_the_configured_devices():
    base = Settings()
    with SimScanner.start(base, seed=3, realtime=False) as lab:
        lab.backdoor.set_scene(Subject(identity=1, posture="front-right").model_dump(mode="json"))
        s = lab.settings_for(base)  # galvo_port and receiver_resource point at the emulator's devices
        acq = s.acquisition.model_copy(update={"record": False, "raw_endpoint": LOCAL_ANY,
                                               "status_endpoint": LOCAL_ANY})
        s = s.model_copy(update={"acquisition": acq})
        rois = live_rois(s, sim=False, identity=None, posture="front-center", concealed=False, n=2,
                         timeout_s=120)
    assert len(rois) == 2
    assert all(r.source.startswith("live:") and r.image.shape == (64, 64) for r in rois)
    assert 0.0 <= min(float(r.image.min()) for r in rois) and max(float(r.image.max()) for r in rois) <= 1.0
    assert rois[0].frame_id < rois[1].frame_id
    assert rois[0].meta["truth"] is None  # on hardware nothing is known of who stands there

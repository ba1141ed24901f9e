"""The virtual scanner publishing `raw` itself, for `--raw-source direct` (no device emulation, no daemon)."""
from __future__ import annotations

import threading
import time

import zmq

from pipeline.settings import Settings
from thzcore.logs import get_logger
from thzcore.netsec import LOCAL_ANY
from thzcore.stage import Ready
from thzcore.wire import encode

log = get_logger(__name__)


class SimRawSource:
    """The virtual scanner publishing `raw` frames directly (no device emulation, no acquisition daemon).

    Frames are acquired back to back with the current scene; t_acquired is the wall-clock time the
    frame was complete. The XPUB socket waits for the processing stage's subscription before the
    first frame, so none is lost to a slow joiner.
    """

    def __init__(self, settings: Settings, seed: int = 0, endpoint: str = LOCAL_ANY, context: zmq.Context | None = None,
                 realtime: bool = False) -> None:
        self.settings = settings
        self.seed = seed
        self.endpoint = endpoint
        self.ctx = context or zmq.Context.instance()
        self.realtime = realtime
        self.frames = 0
        self._scene = None
        self._lock = threading.Lock()

    def set_scene(self, scene: dict | None) -> None:
        from sim.scene import scene_from_json
        with self._lock:
            self._scene = scene_from_json(scene) if scene is not None else None

    def serve(self, stop: threading.Event, ready: Ready) -> None:
        """Bind, report the endpoint through `ready`, publish frames of the current scene until `stop`."""
        from sim.scanner import VirtualScanner

        pub = self.ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 8)
        try:
            pub.bind(self.endpoint)
            vs = VirtualScanner(self.settings.scanner, self.settings.sim, self.seed)
            ready(pub.getsockopt_string(zmq.LAST_ENDPOINT))
            while not stop.is_set() and not pub.poll(100):  # wait for the processing stage's subscription
                pass
            if stop.is_set():
                return
            pub.recv()
            scene, frame_id = None, 0
            period = self.settings.scanner.raster.frame_duration_s
            t_next = time.time()
            while not stop.is_set():
                with self._lock:
                    want = self._scene
                if want != scene:
                    vs.set_scene(want)
                    scene = want
                if scene is None:
                    stop.wait(0.05)
                    continue
                raw = vs.acquire_frame(frame_id)
                if self.realtime:
                    t_next += period
                    stop.wait(max(0.0, t_next - time.time()))
                raw.t_acquired = time.time()
                raw.meta["t_complete"] = raw.t_acquired  # this source stamps the frame when it is complete
                raw.scanner_id = self.settings.scanner.scanner_id
                raw.meta["calibration_id"] = self.settings.acquisition.calibration_id or None
                while pub.poll(0):  # subscription events, not needed after the first
                    pub.recv()
                pub.send_multipart(encode(raw.to_message(seq=frame_id)))
                frame_id += 1
                self.frames += 1
        finally:
            pub.close(0)

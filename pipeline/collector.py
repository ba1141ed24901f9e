"""The result collector of `thz run`: SUB `result` (and `roi`, `frame`, `status` for the report and live view)."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import zmq

from inference.results import ResultMeta, decode_result
from thzcore.wire import Message, WireError, decode


@dataclass
class Collected:
    msg: Message
    meta: ResultMeta
    roi: np.ndarray | None
    reconstruction: np.ndarray | None


class Collector:
    """SUB `result` (and `roi` for the report): results go to `queue`, ROIs are kept by frame id."""

    def __init__(self, result_endpoint: str, roi_endpoint: str | None, context: zmq.Context,
                 view=None, status_endpoint: str | None = None) -> None:
        self.result_endpoint = result_endpoint
        self.roi_endpoint = roi_endpoint
        self.ctx = context
        self.view = view  # pipeline.view.LiveView, fed with frames, results and link state
        self.status_endpoint = status_endpoint
        self.queue: "queue.Queue[Collected]" = queue.Queue()
        self.ready = threading.Event()
        self.rois: dict[tuple[str, int], np.ndarray] = {}
        self.malformed = 0

    def run(self, stop: threading.Event) -> None:
        res = self.ctx.socket(zmq.SUB)
        res.setsockopt(zmq.LINGER, 0)
        res.setsockopt(zmq.SUBSCRIBE, b"result")
        res.connect(self.result_endpoint)
        poller = zmq.Poller()
        poller.register(res, zmq.POLLIN)
        roi = status = None
        if self.roi_endpoint:
            roi = self.ctx.socket(zmq.SUB)
            roi.setsockopt(zmq.LINGER, 0)
            roi.setsockopt(zmq.SUBSCRIBE, b"roi")
            if self.view is not None:
                roi.setsockopt(zmq.SUBSCRIBE, b"frame")
            roi.connect(self.roi_endpoint)
            poller.register(roi, zmq.POLLIN)
        if self.view is not None and self.status_endpoint:
            status = self.ctx.socket(zmq.SUB)
            status.setsockopt(zmq.LINGER, 0)
            status.setsockopt(zmq.SUBSCRIBE, b"status")
            status.connect(self.status_endpoint)
            poller.register(status, zmq.POLLIN)
        self.ready.set()
        pending: list[tuple[float, Message, ResultMeta]] = []  # results whose ROI has not arrived yet
        try:
            while not stop.is_set():
                ev = dict(poller.poll(20 if pending else 100))
                if roi is not None and roi in ev:
                    while True:
                        try:
                            m = decode(roi.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        if m.topic == "frame" and self.view is not None and "frame" in m.arrays:
                            self.view.on_frame(m.frame_id, m.arrays["frame"], m.meta)
                        elif m.topic == "roi" and "roi" in m.arrays:
                            self.rois[(m.scanner_id, m.frame_id)] = np.array(m.arrays["roi"], np.float32)
                            if len(self.rois) > 512:
                                self.rois.pop(next(iter(self.rois)))
                if status is not None and status in ev:
                    while True:
                        try:
                            m = decode(status.recv_multipart(zmq.NOBLOCK), expect_topic="status")
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        self.view.on_status(str(m.meta.get("state", "?")), str(m.meta.get("reason", "")))
                if res in ev:
                    while True:
                        try:
                            msg, meta = decode_result(res.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        pending.append((time.time(), msg, meta))
                now = time.time()
                keep = []
                for t, msg, meta in pending:  # the two SUB sockets race: wait up to 1 s for the ROI
                    image = self.rois.get((msg.scanner_id, msg.frame_id))
                    if image is None and roi is not None and now - t < 1.0:
                        keep.append((t, msg, meta))
                        continue
                    rec = msg.arrays.get("reconstruction")
                    c = Collected(msg, meta, image, None if rec is None else np.array(rec))
                    if self.view is not None:
                        self.view.on_result(msg.frame_id, meta, image, c.reconstruction)
                    self.queue.put(c)
                pending = keep
        finally:
            res.close(0)
            for sock in (roi, status):
                if sock is not None:
                    sock.close(0)

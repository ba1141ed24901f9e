"""The result collector of `thz run`: SUB `result` (and `roi`, `frame`, `status` for the report and live view)."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import zmq

from inference.results import ResultMeta, decode_result
from pipeline.view import LiveView
from thzcore.stage import Ready
from thzcore.wire import Message, WireError, decode


@dataclass
class Collected:
    msg: Message
    meta: ResultMeta
    roi: np.ndarray | None
    reconstruction: np.ndarray | None


class Collector:
    """SUB `result` (and `roi` for the report): results go to `queue`, ROIs are kept by frame id.

    Also `frame` and `status` when a live view is attached. Without a result endpoint (no engine)
    it keeps ROIs only.
    """

    def __init__(self, result_endpoint: str | None, roi_endpoint: str | None, context: zmq.Context,
                 view: LiveView | None = None, status_endpoint: str | None = None) -> None:
        self.result_endpoint = result_endpoint
        self.roi_endpoint = roi_endpoint
        self.ctx = context
        self.view = view  # fed with frames, results and link state
        self.status_endpoint = status_endpoint
        self.queue: "queue.Queue[Collected]" = queue.Queue()
        self.rois: dict[tuple[str, int], np.ndarray] = {}
        self.malformed = 0
        self._pending: list[tuple[float, Message, ResultMeta]] = []  # results whose ROI has not arrived yet

    def _sub(self, endpoint: str, *topics: bytes) -> zmq.Socket:
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            s.setsockopt(zmq.SUBSCRIBE, topic)
        s.connect(endpoint)
        return s

    def _drain(self, sock: zmq.Socket, decode_one: Callable[[list[bytes]], Any],
               handle: Callable[[Any], None]) -> None:
        """Take every message waiting on `sock`; a malformed one is counted and dropped."""
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                item = decode_one(parts)
            except WireError:
                self.malformed += 1
                continue
            handle(item)

    def _on_roi_or_frame(self, m: Message) -> None:
        if m.topic == "frame" and self.view is not None and "frame" in m.arrays:
            self.view.on_frame(m.frame_id, m.arrays["frame"], m.meta)
        elif m.topic == "roi" and "roi" in m.arrays:
            self.rois[(m.scanner_id, m.frame_id)] = np.array(m.arrays["roi"], np.float32)
            if len(self.rois) > 512:
                self.rois.pop(next(iter(self.rois)))

    def _on_status(self, m: Message) -> None:
        if self.view is not None:
            self.view.on_status(str(m.meta.get("state", "?")), str(m.meta.get("reason", "")))

    def _hand_on(self, wait_for_roi: bool) -> None:
        """Results whose ROI arrived (or that waited 1 s for it: the two SUB sockets race) go to the queue."""
        now, keep = time.time(), []
        for t, msg, meta in self._pending:
            image = self.rois.get((msg.scanner_id, msg.frame_id))
            if image is None and wait_for_roi and now - t < 1.0:
                keep.append((t, msg, meta))
                continue
            rec = msg.arrays.get("reconstruction")
            c = Collected(msg, meta, image, None if rec is None else np.array(rec))
            if self.view is not None:
                self.view.on_result(msg.frame_id, meta, image, c.reconstruction)
            self.queue.put(c)
        self._pending = keep

    def serve(self, stop: threading.Event, ready: Ready) -> None:
        poller = zmq.Poller()
        socks: list[zmq.Socket] = []
        res = roi = status = None
        try:
            if self.result_endpoint:
                res = self._sub(self.result_endpoint, b"result")
            if self.roi_endpoint:
                roi = self._sub(self.roi_endpoint, b"roi", *((b"frame",) if self.view is not None else ()))
            if self.view is not None and self.status_endpoint:
                status = self._sub(self.status_endpoint, b"status")
            for s in (res, roi, status):
                if s is not None:
                    poller.register(s, zmq.POLLIN)
                    socks.append(s)
            ready(None)
            while not stop.is_set():
                ev = dict(poller.poll(20 if self._pending else 100))
                if roi is not None and roi in ev:
                    self._drain(roi, decode, self._on_roi_or_frame)
                if status is not None and status in ev:
                    self._drain(status, lambda parts: decode(parts, expect_topic="status"), self._on_status)
                if res is not None and res in ev:
                    self._drain(res, decode_result, lambda mm: self._pending.append((time.time(), *mm)))
                self._hand_on(wait_for_roi=roi is not None)
        finally:
            for s in socks:
                s.close(0)

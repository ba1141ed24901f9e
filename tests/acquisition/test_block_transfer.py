"""The raw frame's way in: blocks received straight into a preallocated buffer, CRC-32 per chunk as it arrives,
buffers reused only when nothing references them, and the emulator sending from its frame memory."""
from __future__ import annotations

import socket
import threading
import time
import zlib

import numpy as np
import pytest
import zmq

from acquisition.buffers import BufferPool
from acquisition.receiver import Receiver
from acquisition.reply_reader import PeerClosed, ReplyTimeout, SocketSource, read_exact_into
from acquisition.scpi import crc32
from sim.emulators.receiver_device import Block, _Frame
from sim.emulators.scpi_server import block_header, send_parts
from tests.robustness.fake_scpi import FakeScpi, StepClock

from .conftest import crc_le, point_at, run_daemon, small_settings, true_crcs

PAYLOAD = np.random.default_rng(5).integers(0, 256, 3 * 1024 * 1024 + 17, dtype=np.uint8).tobytes()


def _sender(sock: socket.socket, data: bytes, pieces: int) -> threading.Thread:
    def run() -> None:
        step = -(-len(data) // pieces)
        for i in range(0, len(data), step):
            sock.sendall(data[i:i + step])
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_crc32_reads_the_array_memory_and_continues_over_chunks():
    a = np.arange(100_000, dtype="<i2")
    assert crc32(a) == zlib.crc32(a.tobytes())
    assert crc32(a[::2]) == zlib.crc32(a[::2].tobytes())           # a strided view: made contiguous first
    assert crc32(a[5000:], crc32(a[:5000])) == crc32(a)           # incremental == whole
    assert crc32(memoryview(a.tobytes())) == crc32(a)


def test_read_exact_into_fills_the_buffer_and_checks_it_chunk_by_chunk():
    a, b = socket.socketpair()
    with a, b:
        src = SocketSource(a, bytearray(PAYLOAD[:1000]))           # what pyvisa-py had buffered comes first
        t = _sender(b, PAYLOAD[1000:], pieces=37)
        buf = bytearray(len(PAYLOAD))
        crc = read_exact_into(src, memoryview(buf), deadline=time.monotonic() + 30, chunk=64 * 1024, crc=0)
        t.join(5)
        assert bytes(buf) == PAYLOAD and crc == zlib.crc32(PAYLOAD) and not src.pending


def test_read_exact_into_stops_at_the_deadline_and_at_eof():
    a, b = socket.socketpair()
    with a, b:
        clock = StepClock(0.01)
        src = SocketSource(a, bytearray(), clock)
        b.sendall(PAYLOAD[:5000])                                  # part of the block, then silence
        with pytest.raises(ReplyTimeout) as exc:
            read_exact_into(src, memoryview(bytearray(10_000)), deadline=clock.now + 0.5)
        assert exc.value.got == 5000
        assert clock.now - 1000.0 <= 0.5 + 0.03                    # stopped at the deadline's reading
        b.sendall(PAYLOAD[:10])
        b.shutdown(socket.SHUT_WR)
        with pytest.raises(PeerClosed):
            read_exact_into(src, memoryview(bytearray(100)), deadline=clock.now + 100)


@pytest.fixture(scope="module")
def frame_server():
    n = len(PAYLOAD) // 2
    data = PAYLOAD[:2 * n]
    srv = FakeScpi(lambda c, conn: send_parts(conn, [block_header(len(data)), data, b"\n"])
                   if c == "FETC:FRAM?" else None)
    yield srv, np.frombuffer(data, "<i2")
    srv.close()


@pytest.mark.integration
@pytest.mark.parametrize("reader", ["exact", "pyvisa"])
def test_a_block_lands_in_the_callers_buffer_with_its_crc(frame_server, reader):
    srv, want = frame_server
    rx = Receiver(srv.resource, 10.0, block_reader=reader)
    rx.open()
    try:
        out = np.full(want.size, -1, "<i2")
        got, crc = rx.query_block_crc("FETC:FRAM?", "h", want.size, out=out)
        assert got is out                                          # no new array: the reused buffer itself
        np.testing.assert_array_equal(out, want)
        assert crc == zlib.crc32(want.tobytes())
        got2, _ = rx.query_block_crc("FETC:FRAM?", "h", want.size)  # without a buffer: a new array
        np.testing.assert_array_equal(got2, want)
        assert rx.is_open
        with pytest.raises(ValueError, match="C-contiguous"):
            rx.query_block_crc("FETC:FRAM?", "h", want.size, out=np.empty(want.size, "<f4"))
        assert rx.is_open                                          # refused before any I/O: the link is fine
    finally:
        rx.close()


def test_buffer_pool_reuses_only_unreferenced_buffers():
    pool = BufferPool((4, 8), "<i2", slots=2)
    a = pool.take()
    frame_view = a.reshape(-1)[:16]                                # what a RawFrame keeps
    del a
    b = pool.take()
    assert not np.shares_memory(b, frame_view) and len(pool) == 2
    mv = memoryview(b)                                             # a zero-copy send holds a buffer export
    del b
    c = pool.take()                                                # both pooled buffers referenced: a fresh one
    assert pool.misses == 1 and len(pool) == 2 and pool.in_use == 2
    assert not np.shares_memory(c, frame_view)
    del frame_view
    d = pool.take()
    assert d is pool._buffers[0] and pool.in_use == 2              # the freed one, handed out again
    del d, c
    assert pool.in_use == 1                                        # only the memoryview's
    del mv
    assert pool.in_use == 0


def test_a_zero_copy_zmq_message_keeps_its_buffer_in_use():
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    try:
        pull.bind("inproc://pool")
        push.connect("inproc://pool")
        pool = BufferPool((1 << 18,), "<i2", slots=1)
        buf = pool.take()
        buf[:] = 7
        push.send(buf, copy=False)                                 # inproc passes the very memory to the receiver
        del buf
        msg = pull.recv(copy=False)
        assert pool.in_use == 1
        assert pool.take() is not pool._buffers[0] and pool.misses == 1
        assert np.frombuffer(msg.buffer, "<i2")[0] == 7
        del msg
        for _ in range(200):                                       # pyzmq releases it from its gc thread
            if pool.in_use == 0:
                break
            threading.Event().wait(0.01)
        assert pool.in_use == 0
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


def test_send_parts_survives_partial_sends():
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)    # every sendmsg takes only part of the frame
        want = block_header(len(PAYLOAD)) + PAYLOAD + b"\n"
        got = bytearray()

        def read() -> None:
            while len(got) < len(want):
                got.extend(b.recv(65536))
        t = threading.Thread(target=read, daemon=True)
        t.start()
        send_parts(a, [block_header(len(PAYLOAD)), memoryview(PAYLOAD), b"\n"])
        t.join(10)
        assert not t.is_alive() and bytes(got) == want


def test_the_emulator_checksums_a_frame_once_and_serves_its_memory():
    f = _Frame(3, 0.0, (2, 2, 2), PAYLOAD[:16], PAYLOAD[16:40], 8)
    assert (f.crc_if, f.crc_fb) == (zlib.crc32(PAYLOAD[:16]), zlib.crc32(PAYLOAD[16:40]))
    g = _Frame(3, 0.0, (2, 2, 2), PAYLOAD[:16], PAYLOAD[16:40], 8, crc_if=11, crc_fb=12)
    assert g.head().endswith(",11,12")                             # FETC:HEAD? reads the stored sums
    blk = Block(f.if_bytes)
    assert blk.data.obj is f.if_bytes and len(blk) == 16 and bytes(blk) == PAYLOAD[:16]


@pytest.mark.integration
def test_frames_kept_by_a_consumer_are_never_overwritten(emu, tmp_path):
    """The daemon keeps every frame (run_daemon's list): each buffer stays in use, fresh ones follow, no frame changes."""
    s = point_at(small_settings(frame_buffers=2), emu.endpoints())
    res, d, got = run_daemon(s, tmp_path, 6, record=False)
    assert res.exit_code == 0, res.reason
    truth = true_crcs(emu)
    crcs = [crc_le(f.if_samples) for f in got]
    assert all(c in truth for c in crcs) and len(set(crcs)) == len(crcs)
    assert d.session.if_buffers.misses == len(got) - 2


@pytest.mark.integration
def test_frames_not_kept_reuse_the_buffers(emu, tmp_path):
    s = point_at(small_settings(frame_buffers=2), emu.endpoints())
    addresses, crcs = [], []

    def on_frame(f):  # look, check, let go (what the publisher and the recorder do)
        addresses.append(f.if_samples.__array_interface__["data"][0])
        crcs.append(crc_le(f.if_samples))

    from acquisition.daemon import AcquisitionDaemon
    d = AcquisitionDaemon(s, out_dir=tmp_path, on_frame=on_frame, record=False)
    res = d.run(frames=6)
    assert res.exit_code == 0, res.reason
    assert all(c in true_crcs(emu) for c in crcs)
    assert len(set(addresses)) <= 2 < len(addresses)               # six frames through two buffers

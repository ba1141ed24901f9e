"""Recordings in NeXus form (version 2): units, axes, @default, times as datasets, string meta, compression;
version 1 files still read (and recover); a newer version is refused."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from acquisition.recover import recover
from thzcore.frames import RawFrame
from thzcore.recording import (RECORDING_VERSION, Recorder, RecordingError, entry_attrs, iter_frames,
                               read_recording)

SHAPE = (4, 16, 32)


def _frame(i: int) -> RawFrame:
    """A beat-like IF block (a tone plus ADC noise), as compressible as a real one, with a truth in its meta."""
    rng = np.random.default_rng(i)
    t = np.arange(SHAPE[2])
    tone = 3000 * np.sin(2 * np.pi * 0.11 * t + rng.random((*SHAPE[:2], 1)) * 6.28)
    if_samples = (tone + rng.normal(0, 20, SHAPE)).astype(np.int16)
    return RawFrame(i, 1000.0 + i, "sc1", if_samples, rng.random(SHAPE[:2], dtype=np.float32),
                    rng.random(SHAPE[0], dtype=np.float32), np.array([1, -1, 1, -1], np.int8),
                    {"truth": {"identity": i}, "note": "µ", "t_complete": 1000.5 + i})


def _record(path, n=3, close=True, **kw) -> Recorder:
    rec = Recorder(path, SHAPE, {"scanner_id": "sc1", "calibration_id": "cal-1"}, grow=2,
                   instrument={"galvo": {"idn": "ACME,GSC-2,17,1.0", "resource": "/dev/ttyUSB0"},
                               "receiver": {"idn": "ACME,FMCW-340,9,2.1", "resource": "TCPIP::10.0.0.5::5025::SOCKET"}},
                   **kw)
    for i in range(n):
        rec.write(_frame(i), seq=i)
    rec.gap(1, 2, 1001.2, 1001.8, "LinkSuspect: µ timeout")
    if close:
        rec.close("closed")
    return rec


def _numeric_datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    out: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda n, o: out.append((n, o)) if isinstance(o, h5py.Dataset) and o.dtype.kind in "iuf" else None)
    return out


def test_nexus_structure(tmp_path):
    _record(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        # @default leads from the root to the NXdata group that plots
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["file_name"] == "s.h5"
        entry = f[f.attrs["default"]]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["recording_version"] == RECORDING_VERSION
        data = entry[entry.attrs["default"]]
        assert data.attrs["NX_class"] == "NXdata"
        signal = data[data.attrs["signal"]]
        axes = list(data.attrs["axes"])
        assert len(axes) == signal.ndim == 4 and axes[0] == "frame_id" and data.attrs["frame_id_indices"] == 0
        assert data["frame_id"].shape[0] == signal.shape[0] == data["t_acquired"].shape[0]
        # units on every numeric dataset; times count from the Unix epoch
        missing = [n for n, ds in _numeric_datasets(f) if "units" not in ds.attrs]
        assert not missing, missing
        assert signal.attrs["units"] == "counts" and data["feedback_x"].attrs["units"] == "m"
        assert data["t_acquired"].attrs["units"] == "s" and data["t_acquired"].attrs["start"] == "1970-01-01T00:00:00Z"
        # NXentry times are datasets (ISO 8601), not attributes
        assert "start_time" not in entry.attrs and "end_time" not in entry.attrs
        for name in ("start_time", "end_time"):
            assert entry[name].asstr()[()].endswith("Z") and entry[name].asstr()[()][:4].isdigit()
        # the devices: identities and addresses as fields of their groups
        inst = entry["instrument"]
        assert inst.attrs["NX_class"] == "NXinstrument"
        assert inst["galvo"].attrs["NX_class"] == "NXpositioner" and inst["receiver"].attrs["NX_class"] == "NXdetector"
        assert inst["receiver/resource"].asstr()[()] == "TCPIP::10.0.0.5::5025::SOCKET"
        assert inst["galvo/idn"].asstr()[()] == "ACME,GSC-2,17,1.0" and inst["galvo/name"].asstr()[()] == "galvo"
        # per-frame meta and gap reasons as variable-length UTF-8 strings once closed
        assert h5py.check_string_dtype(data["meta"].dtype).encoding == "utf-8"
        assert json.loads(data["meta"].asstr()[1])["truth"] == {"identity": 1}
        assert entry["gaps/reason"].asstr()[0] == "LinkSuspect: µ timeout"
        # the raw block is compressed, losslessly
        assert signal.compression == "gzip" and signal.compression_opts == 1 and signal.shuffle
        np.testing.assert_array_equal(signal[2], _frame(2).if_samples)


def test_readers_take_the_closed_form(tmp_path):
    _record(tmp_path / "s.h5")
    r = read_recording(tmp_path / "s.h5")
    assert r.frames == 3 and r.attrs["start_time"].endswith("Z") and r.attrs["end_time"] >= r.attrs["start_time"]
    assert [r.raw_frame(i).meta["truth"] for i in range(3)] == [{"identity": i} for i in range(3)]
    assert r.raw_frame(0).meta["note"] == "µ" and r.raw_frame(0).meta["calibration_id"] == "cal-1"
    assert list(r.gaps["reason"]) == ["LinkSuspect: µ timeout"]
    frames = list(iter_frames(tmp_path / "s.h5"))
    assert [f.meta["t_complete"] for f in frames] == [1000.5, 1001.5, 1002.5]


def test_compression_saves_bytes_and_none_is_available(tmp_path):
    sizes = {}
    for c in ("gzip", "lzf", "none"):
        _record(tmp_path / f"{c}.h5", n=6, compression=c)
        with h5py.File(tmp_path / f"{c}.h5", "r") as f:  # bytes stored for the raw block (the file's overhead aside)
            sizes[c] = f["entry/data/if_samples"].id.get_storage_size()
        np.testing.assert_array_equal(read_recording(tmp_path / f"{c}.h5").data["if_samples"][5], _frame(5).if_samples)
    assert sizes["none"] == 6 * np.prod(SHAPE) * 2
    assert sizes["gzip"] < 0.8 * sizes["none"] and sizes["lzf"] < sizes["none"], sizes
    with pytest.raises(ValueError, match="compression='zstd'"):
        Recorder(tmp_path / "z.h5", SHAPE, {}, compression="zstd")
    assert not list(tmp_path.glob("z.h5*"))  # nothing left behind


def test_a_crash_left_file_reads_and_recovers_to_the_closed_form(tmp_path):
    rec = _record(tmp_path / "c.h5", close=False)
    rec._f.flush()
    with h5py.File(tmp_path / "c.h5", "r", swmr=True) as f:  # while written: fixed-length meta (SWMR)
        assert f["entry/data/meta"].dtype.kind == "S"
        assert "end_time" not in f["entry"]
    assert [f.meta["truth"]["identity"] for f in iter_frames(tmp_path / "c.h5")] == [0, 1, 2]
    rec._f.close()  # the writer stops without close(): status stays "running"
    res = recover(tmp_path / "c.h5")
    assert res.frames == 3 and res.status_before == "running"
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert h5py.check_string_dtype(f["entry/data/meta"].dtype) is not None
        assert f["entry"].attrs["recording_version"] == RECORDING_VERSION
        assert f["entry/instrument/receiver/resource"].asstr()[()] == "TCPIP::10.0.0.5::5025::SOCKET"
        assert f["entry/start_time"].asstr()[()].endswith("Z")
    r = read_recording(tmp_path / "c.h5")
    assert [r.raw_frame(i).meta["truth"] for i in range(3)] == [{"identity": i} for i in range(3)]


def _as_version_1(path) -> None:
    """Turn a recording into what version 1 wrote: start_time an attribute, idn attributes, fixed-length meta and
    reasons, no units, no version attribute."""
    with h5py.File(path, "r+") as f:
        e = f["entry"]
        e.attrs["start_time"] = e["start_time"].asstr()[()]
        e.attrs["end_time"] = e["end_time"].asstr()[()]
        del e["start_time"], e["end_time"]
        del e.attrs["recording_version"], e.attrs["default"], f.attrs["default"]
        for dev in ("galvo", "receiver"):
            g = e["instrument"][dev]
            g.attrs["idn"] = g["idn"].asstr()[()]
            for k in list(g):
                del g[k]
        for group, name, n in ((e["data"], "meta", 4096), (e["gaps"], "reason", 160)):
            values = [v.encode() for v in group[name].asstr()[:]]
            del group[name]
            group.create_dataset(name, data=np.array(values, dtype=f"S{n}"), maxshape=(None,), chunks=(64,))
        for _, ds in _numeric_datasets(f):
            for k in ("units", "long_name", "start"):
                if k in ds.attrs:
                    del ds.attrs[k]


def test_version_1_recordings_still_read_and_recover(tmp_path):
    _record(tmp_path / "v1.h5")
    _as_version_1(tmp_path / "v1.h5")
    r = read_recording(tmp_path / "v1.h5")
    assert r.frames == 3 and r.attrs["start_time"].endswith("Z")
    assert [r.raw_frame(i).meta["truth"] for i in range(3)] == [{"identity": i} for i in range(3)]
    assert list(r.gaps["reason"]) == ["LinkSuspect: µ timeout"]
    # a version 1 file left by a crash is recovered into the current form, the device identities kept
    with h5py.File(tmp_path / "v1.h5", "r+") as f:
        f["entry"].attrs["status"] = "running"
    res = recover(tmp_path / "v1.h5")
    assert res.frames == 3
    with h5py.File(tmp_path / "v1.h5", "r") as f:
        assert f["entry"].attrs["recording_version"] == RECORDING_VERSION
        assert f["entry/instrument/galvo/idn"].asstr()[()] == "ACME,GSC-2,17,1.0"
        assert entry_attrs(f["entry"])["start_time"].endswith("Z")
        assert all("units" in ds.attrs for _, ds in _numeric_datasets(f))
    assert read_recording(tmp_path / "v1.h5").raw_frame(2).meta["truth"] == {"identity": 2}


def test_a_newer_version_is_refused_with_a_clear_message(tmp_path):
    _record(tmp_path / "v9.h5")
    with h5py.File(tmp_path / "v9.h5", "r+") as f:
        f["entry"].attrs["recording_version"] = RECORDING_VERSION + 7
    with pytest.raises(RecordingError, match=r"recording version 9, newer than this thz-face reads \(2\)"):
        read_recording(tmp_path / "v9.h5")
    with pytest.raises(RecordingError, match="newer"):
        next(iter_frames(tmp_path / "v9.h5"))


def test_a_nexus_reader_opens_it(tmp_path):
    """Optional: nexusformat (pip install nexusformat) reads the tree and finds the plottable default."""
    nx = pytest.importorskip("nexusformat.nexus")
    _record(tmp_path / "s.h5")
    root = nx.nxload(str(tmp_path / "s.h5"))
    assert root.entry.nxclass == "NXentry" and root.entry.data.nxclass == "NXdata"
    assert root.plottable_data is not None and root.plottable_data.nxsignal.nxname == "if_samples"


def test_silx_reads_the_default_plot(tmp_path):
    """silx (the beamline viewer's library) opens the file and finds a valid NXdata default: signal, axes, units."""
    pytest.importorskip("silx")
    import silx.io
    from silx.io import nxdata

    _record(tmp_path / "s.h5")
    with silx.io.open(str(tmp_path / "s.h5")) as f:
        assert nxdata.is_NXroot_with_default_NXdata(f)
        plot = nxdata.get_default(f)
        assert plot is not None and plot.is_valid, getattr(plot, "issues", None)
        assert plot.signal.name.endswith("/if_samples") and plot.signal.shape == (3, *SHAPE)
        assert plot.signal_name.startswith("IF samples")                   # its long_name labels the plot
        assert plot.axes_dataset_names[0] == "frame_id"
        assert np.array_equal(plot.axes[0][()], np.arange(3))          # the frame axis is the frames' ids
        assert np.array_equal(plot.signal[1], _frame(1).if_samples)     # the data, losslessly (gzip)


def test_a_torn_meta_row_is_rewritten_as_the_text_before_its_nul(tmp_path):
    """Seen in the kill -9 test: a writer killed inside a fixed-length meta row leaves NULs and then old bytes;
    the closed layout's variable-length strings cannot hold an embedded NUL, so recovery failed."""
    from thzcore.recording import finish_layout, frame_meta_from_bytes

    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_group("entry/data").create_dataset("meta", data=np.array([b'{"a": 1}', b'{"b": \x00\x00"old"}'],
                                                                          dtype="S24"))
        f.create_group("entry/gaps").create_dataset("reason", data=np.array([b"link\x00"], dtype="S8"))
        finish_layout(f)
        meta = [v.decode() if isinstance(v, bytes) else v for v in f["entry/data/meta"][:]]
        assert meta == ['{"a": 1}', '{"b": '] and h5py.check_string_dtype(f["entry/data/meta"].dtype)
        assert frame_meta_from_bytes(meta[0]) == {"a": 1} and frame_meta_from_bytes(meta[1]) == {}
        assert f["entry/gaps/reason"][0] in (b"link", "link")

"""Clearing the consistency flags a killed HDF5 writer leaves (thzcore.h5clear), on literal bytes and a real kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from thzcore.h5clear import clear_consistency_flags, extend_eoa, lookup3, superblock


def test_lookup3_matches_the_reference_vectors():
    # the self-test values of Bob Jenkins' lookup3.c (hashlittle)
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_a_closed_files_superblock_checksum_is_lookup3(tmp_path):
    p = tmp_path / "ok.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["a"] = np.arange(3)
    head = p.read_bytes()[:100]
    version, flags, end = superblock(head)
    assert version in (2, 3) and flags == 0 and end == 44  # 8-byte offsets: 12 + 4 x 8
    assert lookup3(head[:end]) == int.from_bytes(head[end:end + 4], "little")
    assert clear_consistency_flags(p) is False  # nothing to clear: the file is not touched


def test_a_killed_writers_file_opens_after_clearing(tmp_path):
    p = tmp_path / "killed.h5"
    code = ("import h5py, os, signal, numpy as np\n"
            f"f = h5py.File({str(p)!r}, 'w', libver='latest'); f['a'] = np.arange(3); f.flush()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(p, "r")
    assert clear_consistency_flags(p) is True
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(f["a"][:], np.arange(3))


def test_a_damaged_superblock_is_left_alone(tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["a"] = 1
    b = bytearray(p.read_bytes())
    b[11] = 1
    b[20] ^= 0xFF  # a flag set, and a byte the checksum no longer covers correctly
    p.write_bytes(bytes(b))
    assert clear_consistency_flags(p) is False
    assert p.read_bytes()[11] == 1
    assert os.path.getsize(p) == len(b)


# a recording whose SWMR writer was killed at a seeded moment of tests/robustness/test_kill9.py (seed 1313,
# run 7, on a 2-core machine): its superblock's end-of-file address is short of the file, and the /entry
# group's header is torn. An SWMR reader of it retried for more than 14 minutes.
KILLED = Path(__file__).resolve().parents[1] / "data" / "killed_swmr_writer.h5"


def test_extend_eoa_sets_the_end_of_file_address_to_the_files_size(tmp_path):
    import shutil
    p = tmp_path / "k.h5"
    shutil.copy(KILLED, p)
    head = p.read_bytes()[:64]
    assert int.from_bytes(head[28:36], "little") < p.stat().st_size
    assert extend_eoa(p) is True
    new = p.read_bytes()
    _, _, end = superblock(new[:64])
    assert int.from_bytes(new[28:36], "little") == p.stat().st_size
    assert lookup3(new[:end]) == int.from_bytes(new[end:end + 4], "little")     # checksum rewritten
    assert new[:28] == head[:28] and new[36:end] == head[36:end]              # nothing else touched
    assert extend_eoa(p) is False                                              # already at the end


def test_recover_of_a_torn_recording_fails_at_once_instead_of_waiting(tmp_path):
    import shutil
    p = tmp_path / "k.h5"
    shutil.copy(KILLED, p)
    code = ("import sys\nfrom acquisition.recover import recover\nfrom thzcore.recording import RecordingError\n"
            "try:\n    recover(sys.argv[1])\nexcept RecordingError as e:\n    print('refused:', e)\n")
    # a hang (the SWMR reader's retries) would take minutes: the generous limit only catches that
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "nothing can be recovered" in r.stdout

"""Clearing the consistency flags a killed HDF5 writer leaves (thzcore.h5clear), on literal bytes and a real kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from thzcore.h5clear import clear_consistency_flags, lookup3, superblock


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

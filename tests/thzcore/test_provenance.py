"""Provenance: the sources hash tells code changes from environment changes."""
from __future__ import annotations

import numpy as np

from thzcore import provenance


def test_code_hash_follows_the_bytes_of_the_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    (tmp_path / "one.py").write_text("z = 3\n")
    h = provenance.code_hash(("pkg", "one.py"))
    assert len(h) == 16 and h == provenance.code_hash(("one.py", "pkg"))  # the order of the paths does not matter
    (tmp_path / "pkg" / "notes.txt").write_text("changed")
    assert provenance.code_hash(("pkg", "one.py")) == h                   # only Python sources count
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 3\n")
    assert provenance.code_hash(("pkg", "one.py")) != h
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "pkg" / "sub" / "b.py").rename(tmp_path / "pkg" / "c.py")
    assert provenance.code_hash(("pkg", "one.py")) != h                   # a moved file is other code
    assert provenance.code_hash(("missing",)) == ""


def test_library_versions():
    v = provenance.library_versions(("numpy", "no-such-distribution-xyz"))
    assert v["numpy"] == np.__version__ and v["no-such-distribution-xyz"] == "" and v["python"].count(".") == 2

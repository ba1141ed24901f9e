"""Gallery round trips, owner-only file, model-id refusal, audit; decisions on known pairs."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from inference.gallery import Gallery, GalleryError, ModelMismatchError
from inference.matching import cosine_distance, identify, verify


def unit(*v):
    a = np.zeros(128, np.float32)
    a[: len(v)] = v
    return a / np.linalg.norm(a)


def test_cosine_distance_closed_forms():
    a, b = unit(1, 0), unit(0, 1)
    assert cosine_distance(a, a)[0] == pytest.approx(0.0, abs=1e-7)
    assert cosine_distance(a, b)[0] == pytest.approx(1.0)         # orthogonal
    assert cosine_distance(a, -a)[0] == pytest.approx(2.0)        # opposite
    assert cosine_distance(a, unit(1, 1))[0] == pytest.approx(1 - np.sqrt(0.5), abs=1e-7)  # 45 deg: 0.2929
    with pytest.raises(ValueError, match="sizes"):
        cosine_distance(a, np.ones((1, 3)))


def test_verify_known_pairs():
    templates = np.stack([unit(1, 0), unit(0, 1)])
    # 30 deg from the first template: d = 1 - cos 30 = 0.1340 -> accepted at 0.2, rejected at 0.1
    probe = unit(np.cos(np.pi / 6), np.sin(np.pi / 6))
    assert verify(probe, "a", templates, 0.2).accepted
    v = verify(probe, "a", templates, 0.1)
    assert not v.accepted and v.distance == pytest.approx(1 - np.cos(np.pi / 6), abs=1e-6)
    assert verify(unit(0, 0, 1), "a", templates, 0.5).distance == pytest.approx(1.0)  # orthogonal to both


def test_identify_open_set():
    g = {"alice": np.stack([unit(1, 0, 0)]), "bob": np.stack([unit(0, 1, 0), unit(0, 0, 1)])}
    r = identify(unit(0.1, 1, 0), g, threshold=0.2, top_k=2)
    assert r.identity == "bob" and [c[0] for c in r.candidates] == ["bob", "alice"]
    r = identify(unit(1, 1, 1), g, threshold=0.2)  # 1 - 1/sqrt(3) = 0.4226 from everyone: rejected
    assert r.identity is None and r.candidates[0][1] == pytest.approx(1 - 1 / np.sqrt(3), abs=1e-6)


def test_round_trip_and_owner_only_file(tmp_path):
    path = tmp_path / "sub" / "g.sqlite"
    with Gallery(path, "model-A", clock=lambda: 1000.0) as g:
        g.enroll("s1", unit(1, 0), "front-center", source="scan:1")
        g.enroll("s1", unit(1, 0.1), "full-left")
        g.enroll("s2", unit(0, 1), "front-left")
        assert g.subjects() == ["s1", "s2"]
        assert g.templates_by_posture("s1") == {"front-center": 1, "full-left": 1}
    for f in path.parent.iterdir():  # the database and its WAL files: owner read/write only
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    with Gallery(path, "model-A") as g:  # reopened: the same templates, bit for bit
        t = g.templates("s1")
        np.testing.assert_array_equal(t[0], unit(1, 0))
        assert t.shape == (2, 128)


def test_other_model_refuses_and_says_re_enrol(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery(path, "model-A") as g:
        g.enroll("s1", unit(1, 0), "front-center")
    with Gallery(path, "model-B") as g:
        with pytest.raises(ModelMismatchError, match="re-enrol.*thz enroll --subject s1"):
            g.verify(unit(1, 0), "s1", 0.3)
        with pytest.raises(ModelMismatchError, match="re-enrol"):
            g.identify(unit(1, 0), 0.3)
        g.enroll("s2", unit(0, 1), "front-center")  # re-enrolled subjects match again, stale ones are skipped
        assert g.identify(unit(0, 1), 0.3).identity == "s2"
        assert g.current_gallery()[1] == ["s1"]


def test_decisions_are_audited_without_embeddings(tmp_path):
    with Gallery(tmp_path / "g.sqlite", "m", clock=lambda: 5.0) as g:
        g.enroll("s1", unit(1, 0), "front-center")
        g.enroll("s2", unit(0, 1), "front-center")
        assert g.verify(unit(1, 0.05), "s1", 0.3, frame_id=7).accepted
        assert not g.verify(unit(1, 0.05), "s2", 0.3, frame_id=7).accepted
        assert g.identify(unit(1, 0.05), 0.3, frame_id=8).identity == "s1"
        log = g.audit_log()
        assert [r["kind"] for r in log] == ["identify", "verify", "verify", "enroll", "enroll"]
        assert log[1]["claim"] == "s2" and log[1]["accepted"] == 0 and log[1]["frame_id"] == 7
        assert log[0]["subject"] == "s1" and log[0]["distance"] < 0.01
        assert all("embedding" not in r for r in log)


@pytest.mark.parametrize("emb, posture, match", [
    (np.ones(64, np.float32) / 8, "front-center", "128"),
    (np.full(128, np.nan, np.float32), "front-center", "finite"),
    (np.ones(128, np.float32), "front-center", "norm"),
    (unit(1), "sideways", "posture"),
])
def test_bad_enrolments_rejected(tmp_path, emb, posture, match):
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        with pytest.raises(GalleryError, match=match):
            g.enroll("s1", emb, posture)
        assert g.subjects() == []


def test_unknown_subject_and_empty_gallery(tmp_path):
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        with pytest.raises(GalleryError, match="not enrolled"):
            g.verify(unit(1), "ghost", 0.3)
        with pytest.raises(GalleryError, match="no subject"):
            g.identify(unit(1), 0.3)


def test_enrolment_by_another_connection_is_seen(tmp_path):
    """A long-running stage sees subjects that `thz enroll` adds from another process (connection)."""
    p = tmp_path / "g.sqlite"
    with Gallery(p, "m") as stage, Gallery(p, "m") as cli:
        assert not stage.has_templates()
        cli.enroll("s9", unit(0, 0, 1), "front-right")
        assert stage.identify(unit(0, 0, 1), 0.2).identity == "s9"


def _file_bytes(folder):
    return b"".join(f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file())


@pytest.fixture
def sqlite_keeps_deleted_rows(monkeypatch):
    """Connections as an SQLite built without SQLITE_SECURE_DELETE makes them (Debian's default is on;
    many builds' is off), so the gallery has to ask for erasure itself."""
    import sqlite3
    real = sqlite3.connect

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        db.execute("PRAGMA secure_delete = OFF")
        return db
    monkeypatch.setattr(sqlite3, "connect", connect)


def test_remove_erases_the_templates_bytes_and_is_audited(tmp_path, sqlite_keeps_deleted_rows):
    """After removal no copy of the template is left in the database or its WAL (SQLite otherwise keeps
    deleted rows in free pages); the other subject's template and the audit trail stay."""
    victim = np.random.default_rng(5).standard_normal(128).astype("<f4")
    victim /= np.linalg.norm(victim)
    keep = unit(0, 1)
    path = tmp_path / "g.sqlite"
    with Gallery(path, "m", clock=lambda: 9.0) as g, Gallery(path, "m") as reader:
        for posture in ("front-center", "full-left", "full-right"):
            g.enroll("victim", victim, posture)
        g.enroll("other", keep, "front-center")
        assert reader.identify(victim, 0.1).identity == "victim"
        reader.close()  # the stage lets go; the checkpoint can then empty the WAL
        assert victim.tobytes() in _file_bytes(tmp_path)
        assert g.remove("victim", source="operator") == 3
        assert victim.tobytes()[:32] not in _file_bytes(tmp_path)  # not even a fragment of it
        assert g.subjects() == ["other"] and keep.tobytes() in _file_bytes(tmp_path)
        assert [(r["kind"], r["subject"], r["source"]) for r in g.audit_log(1)] == [("remove", "victim", "operator")]
        with pytest.raises(GalleryError, match="'victim' is not enrolled"):
            g.remove("victim")
        with pytest.raises(GalleryError, match="not enrolled"):
            g.verify(victim, "victim", 0.3)


def test_remove_stale_keeps_the_current_models_templates(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery(path, "old") as g:
        g.enroll("a", unit(1, 0), "front-center")
        g.enroll("b", unit(0, 1), "front-center")
        g.enroll("b", unit(0, 1, 1), "full-left")
    with Gallery(path, "new") as g:
        g.enroll("a", unit(1, 0.2), "front-left")  # a re-enrolled with the new model; b not
        assert {r["subject"]: (r["postures"], r["other_models"]) for r in g.summary()} == {
            "a": ({"front-left": 1}, 1), "b": ({}, 2)}
        assert g.remove_stale() == {"a": 1, "b": 2}
        assert g.subjects() == ["a"] and g.templates("a").shape == (1, 128)
        assert g.remove_stale() == {}
        assert [r["subject"] for r in g.audit_log(2)] == ["b", "a"]


def test_template_matrix_search_equals_the_loop_over_subjects():
    """The one-matrix-product 1:N search against a plain float64 loop (independent reference)."""
    from inference.matching import TemplateMatrix, identify

    rng = np.random.default_rng(11)
    e = 128
    gallery = {}
    for i in range(300):
        t = rng.standard_normal((int(rng.integers(1, 6)), e))
        gallery[f"s{i:03d}"] = t / np.linalg.norm(t, axis=1, keepdims=True)
    gallery["twin"] = gallery["s007"].copy()          # an exact tie: broken by subject id
    probe = gallery["s007"][0] + 0.05 * rng.standard_normal(e)
    probe /= np.linalg.norm(probe)

    ref = sorted(((s, float(np.min(1.0 - t @ probe))) for s, t in gallery.items()), key=lambda sd: (sd[1], sd[0]))
    got = identify(probe, TemplateMatrix(gallery), threshold=0.5, top_k=5)
    tol = e * np.finfo(np.float32).eps                 # float32 dot products of unit vectors of size E
    assert [s for s, _ in got.candidates] == [s for s, _ in ref[:5]]
    assert got.candidates[0][0] == "s007" and got.candidates[1][0] == "twin"
    assert all(abs(d - r) <= tol for (_, d), (_, r) in zip(got.candidates, ref))
    assert got.identity == "s007"
    assert identify(probe, TemplateMatrix(gallery), threshold=0.0, top_k=3).identity is None   # open set
    assert identify(probe, TemplateMatrix({}), threshold=0.5).candidates == []
    with pytest.raises(ValueError, match="embedding sizes differ"):
        TemplateMatrix(gallery).nearest(probe[:64])


def _random_gallery(rng: np.random.Generator, subjects: int, e: int = 128, most: int = 6) -> dict[str, np.ndarray]:
    gallery = {}
    for i in range(subjects):
        t = rng.standard_normal((int(rng.integers(1, most + 1)), e)).astype(np.float32)
        gallery[f"s{i:04d}"] = t / np.linalg.norm(t, axis=1, keepdims=True)
    return gallery


@pytest.mark.parametrize("k", [1, 3, 5, 50])
def test_faiss_search_equals_the_numpy_search(k):
    """IndexFlatIP behind TemplateMatrix: the same subjects in the same order, distances to float32 rounding."""
    pytest.importorskip("faiss")
    from inference.matching import TemplateMatrix, identify

    rng = np.random.default_rng(5)
    gallery = _random_gallery(rng, 700)
    gallery["twin"] = gallery["s0007"].copy()          # an exact tie across two subjects
    np_index = TemplateMatrix(gallery)
    fa_index = TemplateMatrix(gallery, faiss_min_templates=1)
    assert (np_index.backend, fa_index.backend) == ("numpy", "faiss")
    assert np.array_equal(np_index.matrix, fa_index.matrix)     # the index's own copy, seen through the view
    owner = fa_index.rows(7)                       # a subject's view holds the index whose memory it shows
    while owner is not None and not hasattr(owner, "_index"):
        owner = owner.base
    assert owner is not None and owner._index is fa_index._faiss
    tol = 128 * np.finfo(np.float32).eps
    probes = [gallery[s][0] + 0.05 * rng.standard_normal(128) for s in ("s0007", "s0100", "s0699")]
    probes += [rng.standard_normal(128) for _ in range(5)]      # nobody's: near-equal distances everywhere
    for p in probes:
        p = p / np.linalg.norm(p)
        a, b = identify(p, np_index, 0.5, k), identify(p, fa_index, 0.5, k)
        assert [s for s, _ in b.candidates] == [s for s, _ in a.candidates]
        assert len(a.candidates) == k
        assert all(abs(db - da) <= tol for (_, da), (_, db) in zip(a.candidates, b.candidates))
        assert a.identity == b.identity
    near_7 = identify(probes[0] / np.linalg.norm(probes[0]), fa_index, 0.5, 3)
    assert [s for s, _ in near_7.candidates[:2]] == ["s0007", "twin"]


def test_faiss_search_ties_at_the_cut_fall_back_to_the_full_product():
    """Subjects with the same template beyond the templates faiss fetched: the lowest ids win, as in NumPy."""
    pytest.importorskip("faiss")
    from inference.matching import TemplateMatrix

    rng = np.random.default_rng(6)
    gallery = _random_gallery(rng, 50, most=4)
    same = gallery["s0010"][:1]
    twins = ("s0020", "s0025", "s0030", "s0035", "s0040", "s0045", "s0049")
    for s in twins:
        gallery[s] = np.concatenate([gallery[s], same])      # eight subjects at exactly the same distance
    fa_index, np_index = TemplateMatrix(gallery, faiss_min_templates=1), TemplateMatrix(gallery)
    fetched = (2 - 1) * fa_index.max_count + 2              # what faiss fetches for k = 2: fewer than the ties
    assert fetched < 1 + len(twins)
    assert fa_index._search_faiss(same[0], 2) is None        # the cut falls inside the tie: not decided there
    got = fa_index.search(same[0], 2)
    assert [i for i, _ in got] == [i for i, _ in np_index.search(same[0], 2)]
    assert [fa_index.subjects[i] for i, _ in got] == ["s0010", "s0020"]
    other = -same[0]                                          # as far from the tied template as can be
    decided = fa_index._search_faiss(other, 2)                 # no tie there: faiss decides
    assert decided is not None and [i for i, _ in decided] == [i for i, _ in np_index.search(other, 2)]


def test_gallery_identify_with_faiss_and_one_copy_of_the_templates(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(7)
    gallery = _random_gallery(rng, 40)
    probe = gallery["s0013"][1] + 0.02 * rng.standard_normal(128)
    probe /= np.linalg.norm(probe)
    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        assert g.enroll_many((s, t, "front-center") for s, t in gallery.items()) == sum(map(len, gallery.values()))
        ref = g.identify(probe, threshold=0.3, top_k=3)
    with Gallery(path, "m", faiss_min_templates=10, search_threads=1) as g:
        got = g.identify(probe, threshold=0.3, top_k=3)
        cache, index = g.current_gallery()[0], g.search_index()
        assert index.backend == "faiss"
        assert all(np.shares_memory(t, index.matrix) for t in cache.values())   # views, not a second copy
        assert np.array_equal(g.templates("s0013"), gallery["s0013"])
    assert got.identity == ref.identity == "s0013"
    assert [s for s, _ in got.candidates] == [s for s, _ in ref.candidates]


def test_enroll_many_is_one_checked_audited_transaction(tmp_path):
    rng = np.random.default_rng(8)
    gallery = _random_gallery(rng, 5)
    with Gallery(tmp_path / "g.sqlite", "m") as g:
        n = g.enroll_many([(s, t, "full-left") for s, t in gallery.items()], source="import")
        assert n == sum(map(len, gallery.values()))
        assert g.subjects() == sorted(gallery)
        assert np.array_equal(g.templates("s0002"), gallery["s0002"])
        assert sum(r["kind"] == "enroll" for r in g.audit_log(1000)) == n
        with pytest.raises(GalleryError, match="norm"):
            g.enroll_many([("new", gallery["s0001"], "full-left"), ("bad", np.ones((2, 128)), "full-left")])
        assert "new" not in g.subjects()            # nothing of a refused batch is written
        assert g.templates_by_posture("s0000") == {"full-left": len(gallery["s0000"])}


def test_blas_threads_are_limited_inside_the_search_and_restored():
    """NumPy's BLAS (loaded before the first search, so in the controller) runs one thread inside, as before after."""
    from inference.matching import _blas_controller, _blas_threads

    before = [i["num_threads"] for i in _blas_controller().info()]
    assert before
    with _blas_threads(1, 10**6):
        assert all(i["num_threads"] == 1 for i in _blas_controller().info())
    assert [i["num_threads"] for i in _blas_controller().info()] == before


@pytest.mark.parametrize("blob, match", [(b"\x00" * 100, "100 bytes"),
                                         (np.full(128, np.nan, "<f4").tobytes(), "NaN or infinity")])
def test_a_damaged_template_is_named_when_the_index_is_read(tmp_path, blob, match):
    from inference.gallery import GalleryCorruptError

    path = tmp_path / "g.sqlite"
    with Gallery(path, "m") as g:
        g.enroll_many([("a", unit(1), "front-center"), ("b", np.stack([unit(0, 1), unit(1, 1)]), "front-center")])
        g._db.execute("UPDATE templates SET embedding = ? WHERE id = (SELECT MAX(id) FROM templates)", (blob,))
        g._db.commit()
    with Gallery(path, "m") as g:
        with pytest.raises(GalleryCorruptError, match=f"a template of 'b' holds {match}"):
            g.identify(unit(1), 0.3)
        assert np.array_equal(g.templates("a"), unit(1)[None])


@pytest.mark.parametrize("faiss_min", [None, 1])
def test_with_rows_equals_an_index_built_from_scratch(faiss_min):
    """An enrolment's in-memory update: a known subject at the start, middle and end, a new one in each place."""
    from inference.matching import TemplateMatrix

    rng = np.random.default_rng(5)

    def units(k):
        t = rng.standard_normal((k, 128)).astype(np.float32)
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    gallery = {s: units(k) for s, k in [("b", 2), ("d", 1), ("f", 3)]}
    index = TemplateMatrix({}, faiss_min_templates=faiss_min)
    for s, t in gallery.items():                          # grown from empty, one subject at a time
        index = index.with_rows(s, t)
    for s in ["b", "d", "f", "a", "c", "g"]:
        new = units(1 + len(s) % 2)
        before = index.matrix.copy()
        grown = index.with_rows(s, new)
        gallery[s] = np.concatenate([gallery[s], new]) if s in gallery else new
        want = TemplateMatrix(gallery, faiss_min_templates=faiss_min)
        assert np.array_equal(index.matrix, before)      # the old index is untouched
        assert grown.subjects == want.subjects and np.array_equal(grown.starts, want.starts)
        assert np.array_equal(grown.matrix, want.matrix) and grown.backend == want.backend
        p = units(1)[0]
        assert grown.search(p, 3) == want.search(p, 3)
        index = grown
    with pytest.raises(ValueError, match="sizes differ"):
        index.with_rows("z", np.ones((1, 64), np.float32))


def test_an_enrolment_updates_the_cached_index_without_reading_the_file(tmp_path, monkeypatch):
    p = tmp_path / "g.sqlite"
    with Gallery(p, "m") as g, Gallery(p, "m") as other:
        g.enroll("s1", unit(1, 0), "front-center")
        other.enroll("s0", unit(0, 1), "front-center")
        assert g.identify(unit(1, 0), 0.2).identity == "s1"           # the index is built once here
        reads = []
        real = g._load_index
        monkeypatch.setattr(g, "_load_index", lambda: reads.append(1) or real())
        g.enroll("s2", unit(0, 0, 1), "front-left")
        g.enroll("s1", unit(1, 1), "front-right")
        assert g.identify(unit(0, 0, 1), 0.2).identity == "s2" and g.identify(unit(1, 1), 0.2).identity == "s1"
        assert reads == []                                 # the two enrolments updated it in memory
        with Gallery(p, "m") as fresh:                     # and it equals the file read afresh
            assert fresh.search_index().subjects == g.search_index().subjects
            assert np.array_equal(fresh.search_index().matrix, g.search_index().matrix)
        other.enroll("s3", unit(0, 0, 0, 1), "front-center")   # another connection: the file is read again
        assert g.identify(unit(0, 0, 0, 1), 0.2).identity == "s3" and reads == [1]


def test_verify_in_posture_uses_the_claims_template_of_that_posture():
    from inference.matching import verify_in_posture
    templates = np.stack([unit(1, 0, 0), unit(1, 0.2, 0), unit(0, 1, 0)])
    postures = ["front-center", "front-center", "full-left"]
    probe = unit(0, 1, 0.1)
    # in full-left: its one template, d = 1 - cos(angle to y) ~ 0.005
    v = verify_in_posture(probe, "a", templates, postures, "full-left", 0.1)
    assert v.accepted and v.distance == pytest.approx(float(cosine_distance(probe, unit(0, 1, 0)[None])[0]), abs=1e-6)
    # in front-center: the unit mean of the two front-center templates, far from the probe
    mean = templates[:2].sum(0) / np.linalg.norm(templates[:2].sum(0))
    v = verify_in_posture(probe, "a", templates, postures, "front-center", 0.1)
    assert not v.accepted and v.distance == pytest.approx(float(cosine_distance(probe, mean[None])[0]), abs=1e-6)
    # a posture the person never enrolled in: the mean of all their templates
    v = verify_in_posture(probe, "a", templates, postures, "full-right", 0.5)
    everyone = templates.sum(0) / np.linalg.norm(templates.sum(0))
    assert v.distance == pytest.approx(float(cosine_distance(probe, everyone[None])[0]), abs=1e-6)
    with pytest.raises(ValueError, match="no templates"):
        verify_in_posture(probe, "a", np.zeros((0, 128)), [], "full-left", 0.1)


def test_gallery_verifies_by_posture_when_asked(tmp_path):
    with Gallery(tmp_path / "g.sqlite", "model-A") as g:
        g.enroll("s1", unit(1, 0), "front-center")
        g.enroll("s1", unit(0, 1), "full-left")
        probe = unit(0.05, 1)
        # nearest template (no posture): the full-left one, accepted either way
        assert g.verify(probe, "s1", 0.01).accepted
        # as a front-center probe it must match the front-center template: rejected
        v = g.verify(probe, "s1", 0.01, posture="front-center")
        assert not v.accepted and v.distance == pytest.approx(float(cosine_distance(probe, unit(1, 0)[None])[0]))
        assert g.verify(probe, "s1", 0.01, posture="full-left").accepted
        emb, postures = g.templates_with_postures("s1")
        assert postures == ["front-center", "full-left"] and emb.shape == (2, 128)
        assert [a["kind"] for a in g.audit_log()].count("verify") == 3


def test_gallery_verifies_by_the_s_normalised_posture_template_distance_with_a_cohort(tmp_path):
    from thzcore.labels import POSTURES
    from thzcore.score_norm import Cohort
    rng = np.random.default_rng(8)
    c = rng.normal(size=(12, 128))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    post = np.array([POSTURES.index("front-center")] * 6 + [POSTURES.index("full-left")] * 6)
    cohort = Cohort(c, post, np.repeat(np.arange(6), 2), top_k=4)
    with Gallery(tmp_path / "g.sqlite", "model-A") as g:
        g.enroll("s1", unit(1, 0, 0.2), "front-center")
        g.enroll("s1", unit(0, 1), "full-left")
        probe = unit(1, 0.1)
        v = g.verify(probe, "s1", -1.0, posture="front-center", cohort=cohort)
        t = unit(1, 0, 0.2).astype(np.float64)
        d = 1 - float(probe.astype(np.float64) @ t)
        # by hand: the 4 nearest front-center cohort templates of the probe and of the template
        fc = c[:6]
        near = [np.sort(1 - fc @ x)[:4] for x in (probe.astype(np.float64), t)]
        want = 0.5 * sum((d - n.mean()) / n.std() for n in near)
        assert v.score == "s_norm" and v.raw_distance == pytest.approx(d, abs=1e-6)
        assert v.distance == pytest.approx(want, rel=1e-5, abs=1e-5) and v.accepted == (want <= -1.0)
        js = v.to_json()
        assert js["score"] == "s_norm" and js["raw_distance"] == pytest.approx(d, abs=1e-5)
        from inference.results import VerificationResult
        assert VerificationResult(**js).score == "s_norm"   # what the inference stage publishes
        # without a cohort the same claim is decided on the cosine distance, as before
        raw = g.verify(probe, "s1", 0.05, posture="front-center")
        assert raw.score == "cosine" and "score" not in raw.to_json() and raw.distance == pytest.approx(d, abs=1e-6)

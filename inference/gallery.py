"""The enrolment gallery: an owner-only SQLite file of subjects, templates per posture and model id, and an audit trail.

Tables
  subjects(subject_id PK, display_name, created)
  templates(id, subject_id, posture, model_id, embedding BLOB float32 LE, source, created)
  decisions(id, ts, kind enroll|verify|identify|remove, model_id, frame_id, claim, subject, distance,
            threshold, accepted, source)   -- the audit table: every decision, never an embedding
Templates made with another model cannot be compared with the current one (different embedding
spaces): matching refuses them and says to re-enrol.

Removal erases: the connection runs with `secure_delete` (freed pages are overwritten with zeros,
not left in the file), and a removal ends with a truncating WAL checkpoint, so neither the database
nor its write-ahead log keeps a removed subject's templates. The audit rows stay: they hold ids,
distances and decisions, never an embedding or image.
"""
from __future__ import annotations

import functools
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from inference.matching import Identification, TemplateMatrix, Verification, identify, verify, verify_in_posture
from thzcore.score_norm import Cohort
from thzcore.labels import POSTURES
from thzcore.logs import get_logger

log = get_logger(__name__)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY, display_name TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE,
    posture TEXT NOT NULL, model_id TEXT NOT NULL, embedding BLOB NOT NULL, source TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS templates_subject ON templates(subject_id, model_id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, model_id TEXT NOT NULL, frame_id INTEGER,
    claim TEXT, subject TEXT, distance REAL, threshold REAL, accepted INTEGER, source TEXT NOT NULL DEFAULT '');
"""


class GalleryError(ValueError):
    """A gallery operation that cannot be done as asked (unknown subject, bad embedding...)."""


class GalleryRequestError(GalleryError):
    """Asked for what the gallery does not hold or cannot take: a subject not enrolled, an empty gallery, a bad
    subject id or posture (the command line is wrong, not the file)."""


class GalleryCorruptError(GalleryError):
    """The gallery file is not a readable gallery database, or a stored template is damaged."""


class ModelMismatchError(GalleryError):
    """Templates were made with another model; the subject must be re-enrolled."""


def _db_errors(fn):
    """sqlite3 errors of a damaged or foreign file -> GalleryError naming the file (never a traceback)."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise GalleryCorruptError(f"gallery {self.path}: not a readable gallery database ({exc}); restore it from a "
                               "backup or point inference.gallery / --gallery at another file") from None
    return wrapper


def _create_private(path: Path) -> None:
    """Create the database file readable and writable by its owner only (biometric templates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Gallery:
    """Enrolled subjects and their templates for one model id. Use as a context manager or call close().

    One connection per thread: open a Gallery in the thread that uses it.
    """

    def __init__(self, path: str | Path, model_id: str, embedding_size: int = 128, clock=time.time, *,
                 faiss_min_templates: int | None = None, search_threads: int = 1) -> None:
        """`faiss_min_templates`, `search_threads`: the 1:N search's backend choice and threads
        (inference.faiss_min_templates, inference.identify_threads; matching.TemplateMatrix)."""
        self.path = Path(path).expanduser()
        self.faiss_min_templates = faiss_min_templates
        self.search_threads = search_threads
        if str(path) != ":memory:":
            if self.path.is_dir():
                raise GalleryCorruptError(f"gallery {self.path} is a directory; give the path of a gallery file")
            try:
                _create_private(self.path)
            except OSError as exc:
                raise GalleryCorruptError(f"gallery {self.path}: cannot create or open it ({exc.strerror or exc})") from None
        self._db = None
        try:
            self._open(path, model_id, embedding_size, clock)
        except sqlite3.DatabaseError as exc:
            if self._db is not None:
                self._db.close()
            raise GalleryCorruptError(f"gallery {self.path}: not a readable gallery database ({exc}); restore it from a "
                               "backup or point inference.gallery / --gallery at another file") from None

    def _open(self, path, model_id: str, embedding_size: int, clock) -> None:
        self.model_id = model_id
        self.embedding_size = embedding_size
        self._clock = clock
        self._db = sqlite3.connect(str(self.path) if str(path) != ":memory:" else ":memory:")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA secure_delete = ON")  # a removed template's bytes are overwritten, not left
        self._db.execute("PRAGMA journal_mode = WAL")    # -wal/-shm get the database file's mode
        self._db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; the audit stays cheap
        # (version, {subject: templates}, stale subjects, the 1:N search index), rebuilt when the file changed
        self._cache: tuple[int, dict[str, np.ndarray], list[str], TemplateMatrix] | None = None
        self._edits = 0  # template changes made through this connection (data_version counts the others')
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()
        elif int(row[0]) != SCHEMA_VERSION:
            raise GalleryError(f"{self.path}: gallery schema {row[0]}, this software reads {SCHEMA_VERSION}")

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _template(self, blob, subject_id: str) -> np.ndarray:
        """One stored embedding, checked: embedding_size little-endian float32, finite."""
        if not isinstance(blob, (bytes, memoryview)) or len(blob) != 4 * self.embedding_size:
            n = len(blob) if isinstance(blob, (bytes, memoryview)) else type(blob).__name__
            raise GalleryCorruptError(f"gallery {self.path}: a template of {subject_id!r} holds {n} bytes, not "
                               f"{4 * self.embedding_size} ({self.embedding_size} float32): the file is damaged; "
                               f"re-enrol the subject (`thz gallery remove {subject_id}`, then `thz enroll`)")
        t = np.frombuffer(blob, dtype="<f4")
        if not np.all(np.isfinite(t)):
            raise GalleryCorruptError(f"gallery {self.path}: a template of {subject_id!r} holds NaN or infinity; "
                               "re-enrol the subject")
        return t

    # --- enrolment -------------------------------------------------------------------------------
    def _checked(self, subject_id: str, embeddings: np.ndarray, posture: str) -> np.ndarray:
        """Embeddings (one or a (K, E) stack) as little-endian float32 rows, or the error that says what is wrong."""
        if not subject_id or not isinstance(subject_id, str):
            raise GalleryRequestError(f"subject id {subject_id!r} must be a non-empty string")
        if posture not in POSTURES:
            raise GalleryRequestError(f"posture {posture!r} not in {POSTURES}")
        e = np.atleast_2d(np.asarray(embeddings, dtype="<f4"))
        if e.ndim != 2 or e.shape[1] != self.embedding_size or not np.all(np.isfinite(e)):
            raise GalleryError(f"embedding of {e.shape[-1] if e.ndim else e.size} values (finite: "
                               f"{bool(np.all(np.isfinite(e)))}); expected {self.embedding_size} finite values")
        n = np.linalg.norm(e, axis=1)
        if not np.all((n > 0.99) & (n < 1.01)):
            raise GalleryError(f"embedding norm {float(n[~((n > 0.99) & (n < 1.01))][0]):.4f}; the model's "
                               "embeddings are L2-normalised")
        return e

    @_db_errors
    def enroll(self, subject_id: str, embedding: np.ndarray, posture: str, source: str = "",
               display_name: str = "", frame_id: int | None = None) -> int:
        """Add one template for `subject_id` (created if new). Returns the template row id."""
        e = self._checked(subject_id, np.asarray(embedding).reshape(1, -1), posture)[0]
        now = self._clock()
        before = self._version()
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO subjects(subject_id, display_name, created) VALUES (?, ?, ?)",
                             (subject_id, display_name, now))
            cur = self._db.execute(
                "INSERT INTO templates(subject_id, posture, model_id, embedding, source, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (subject_id, posture, self.model_id, e.tobytes(), source, now))
            self._audit("enroll", frame_id=frame_id, subject=subject_id, source=source)
        self._edits += 1
        self._extend_cache(before, subject_id, e.astype(np.float32))
        log.info("enrolled template", extra={"subject": subject_id, "posture": posture, "model_id": self.model_id})
        return int(cur.lastrowid)

    @_db_errors
    def enroll_many(self, entries: Iterable[tuple[str, np.ndarray, str]], source: str = "") -> int:
        """Add (subject id, (K, E) or (E,) embeddings, posture) entries in one transaction (an import, a bench):
        every entry is checked as `enroll` checks one, and one audit row is written per template as `enroll`
        does. Nothing is written when an entry is refused. Returns the templates added."""
        checked = [(sid, self._checked(sid, emb, posture), posture) for sid, emb, posture in entries]
        now = self._clock()
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO subjects(subject_id, display_name, created) VALUES (?, '', ?)",
                                 [(sid, now) for sid in dict.fromkeys(sid for sid, _, _ in checked)])
            self._db.executemany(
                "INSERT INTO templates(subject_id, posture, model_id, embedding, source, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((sid, posture, self.model_id, row.tobytes(), source, now) for sid, e, posture in checked for row in e))
            self._db.executemany(
                "INSERT INTO decisions(ts, kind, model_id, subject, source) VALUES (?, 'enroll', ?, ?, ?)",
                ((now, self.model_id, sid, source) for sid, e, _ in checked for _ in range(e.shape[0])))
        self._edits += 1
        n = sum(e.shape[0] for _, e, _ in checked)
        log.info("enrolled templates", extra={"subjects": len({c[0] for c in checked}), "templates": n,
                                              "model_id": self.model_id})
        return n

    @_db_errors
    def remove(self, subject_id: str, source: str = "") -> int:
        """Erase `subject_id` and every template of theirs (any model); audited. Returns the templates erased."""
        with self._db:
            n = self._db.execute("SELECT COUNT(*) FROM templates WHERE subject_id = ?", (subject_id,)).fetchone()[0]
            if self._db.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,)).rowcount == 0:
                raise GalleryRequestError(f"subject {subject_id!r} is not enrolled in {self.path}")
            self._audit("remove", subject=subject_id, source=source)
        self._edits += 1
        self._erase_log()
        log.info("removed subject", extra={"subject": subject_id, "templates": n})
        return int(n)

    @_db_errors
    def remove_stale(self, source: str = "") -> dict[str, int]:
        """Erase the templates made with other models, and subjects left with none; audited per subject.

        Returns {subject: templates erased}. Subjects with templates of the current model keep them.
        """
        with self._db:
            rows = self._db.execute("SELECT subject_id, COUNT(*) FROM templates WHERE model_id != ? "
                                    "GROUP BY subject_id ORDER BY subject_id", (self.model_id,)).fetchall()
            self._db.execute("DELETE FROM templates WHERE model_id != ?", (self.model_id,))
            self._db.execute("DELETE FROM subjects WHERE subject_id NOT IN (SELECT subject_id FROM templates)")
            for sid, _ in rows:
                self._audit("remove", subject=sid, source=source or "stale templates")
        self._edits += 1
        self._erase_log()
        return {sid: int(n) for sid, n in rows}

    def _erase_log(self) -> None:
        """Copy the overwritten pages into the database and empty the WAL, which still holds old page images."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("the gallery is open elsewhere: erased templates stay in its write-ahead log until "
                        "every connection closes", extra={"path": str(self.path)})

    # --- queries -----------------------------------------------------------------------------------
    @_db_errors
    def subjects(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT subject_id FROM subjects ORDER BY subject_id")]

    @_db_errors
    def templates(self, subject_id: str) -> np.ndarray:
        """(K, E) templates of `subject_id` for the current model; refuses other models' templates."""
        return self.templates_with_postures(subject_id)[0]

    @_db_errors
    def templates_with_postures(self, subject_id: str) -> tuple[np.ndarray, list[str]]:
        """`templates` and the posture each was enrolled in."""
        rows = self._db.execute("SELECT model_id, embedding, posture FROM templates WHERE subject_id = ? ORDER BY id",
                                (subject_id,)).fetchall()
        if not rows:
            known = self._db.execute("SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,)).fetchone()
            raise GalleryRequestError(f"subject {subject_id!r} is " + ("enrolled without templates" if known
                                                                        else "not enrolled") + f" in {self.path}; "
                                      "run `thz enroll`")
        mine = [r for r in rows if r[0] == self.model_id]
        if not mine:
            others = sorted({r[0] for r in rows})
            raise ModelMismatchError(
                f"subject {subject_id!r} was enrolled with model {', '.join(others)}, not the current model "
                f"{self.model_id}: embeddings of different models cannot be compared; re-enrol the subject "
                f"with `thz enroll --subject {subject_id}`")
        return np.stack([self._template(r[1], subject_id) for r in mine]), [r[2] for r in mine]

    @_db_errors
    def summary(self) -> list[dict]:
        """Each subject: created time, templates per posture for the current model, templates of other models."""
        out = {sid: {"subject": sid, "display_name": name, "created": created, "postures": {}, "other_models": 0}
               for sid, name, created in self._db.execute(
                   "SELECT subject_id, display_name, created FROM subjects ORDER BY subject_id")}
        for sid, mid, posture, n in self._db.execute(
                "SELECT subject_id, model_id, posture, COUNT(*) FROM templates GROUP BY subject_id, model_id, posture"):
            if mid == self.model_id:
                out[sid]["postures"][posture] = n
            else:
                out[sid]["other_models"] += n
        return list(out.values())

    @_db_errors
    def templates_by_posture(self, subject_id: str) -> dict[str, int]:
        rows = self._db.execute("SELECT posture, COUNT(*) FROM templates WHERE subject_id = ? AND model_id = ? "
                                "GROUP BY posture", (subject_id, self.model_id))
        return dict(rows.fetchall())

    def _version(self) -> int:
        """Changes when this or another connection (another `thz enroll`) modified the file."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0]) * 1_000_003 + self._edits

    @_db_errors
    def has_templates(self) -> bool:
        return bool(self.current_gallery()[0])

    @_db_errors
    def current_gallery(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """({subject: templates} for the current model, [subjects only enrolled with other models]), cached.
        The templates are read-only views of the search index's matrix: one copy of them is held."""
        return self._current()[1:3]

    @_db_errors
    def search_index(self) -> TemplateMatrix:
        """The 1:N search index over the current model's templates (rebuilt when the file changed)."""
        return self._current()[3]

    def _extend_cache(self, before: int, subject_id: str, rows: np.ndarray) -> None:
        """After this connection enrolled `rows`, the cached search index gains them in memory (one copy of the
        matrix, TemplateMatrix.with_rows) instead of being rebuilt from the file on the next search: at a
        million templates a rebuild reads the whole file (7-12 s). Only when the cache was current before
        the edit and no other connection wrote since (data_version unchanged): otherwise the next search
        rebuilds as before."""
        if self._cache is None or self._cache[0] != before or self._version() != before + 1:
            return
        stale = [s for s in self._cache[2] if s != subject_id]
        self._cache = self._cache_entry(before + 1, self._cache[3].with_rows(subject_id, rows), stale)

    @staticmethod
    def _cache_entry(version: int, index: TemplateMatrix,
                     stale: list[str]) -> tuple[int, dict[str, np.ndarray], list[str], TemplateMatrix]:
        """(version, {subject: read-only view of its templates}, stale subjects, index): what _current caches."""
        return version, {s: index.rows(i) for i, s in enumerate(index.subjects)}, stale, index

    def _current(self) -> tuple[int, dict[str, np.ndarray], list[str], TemplateMatrix]:
        v = self._version()
        if self._cache is None or self._cache[0] != v:
            self._cache = self._cache_entry(v, *self._load_index())
        return self._cache

    def _load_index(self) -> tuple[TemplateMatrix, list[str]]:
        """The current model's templates read straight into one float32 matrix (rows grouped by subject, in
        subject order), and the subjects enrolled with other models only."""
        size = 4 * self.embedding_size
        began = not self._db.in_transaction
        if began:
            self._db.execute("BEGIN")   # one snapshot for the count and the rows
        try:
            n = self._db.execute("SELECT COUNT(*) FROM templates WHERE model_id = ?", (self.model_id,)).fetchone()[0]
            matrix = np.empty((n, self.embedding_size), np.float32)
            flat = memoryview(matrix.reshape(-1).view(np.uint8))
            subjects: list[str] = []
            counts: list[int] = []
            i = 0
            for sid, blob in self._db.execute("SELECT subject_id, embedding FROM templates WHERE model_id = ? "
                                              "ORDER BY subject_id", (self.model_id,)):
                if not (isinstance(blob, bytes) and len(blob) == size):
                    self._template(blob, sid)   # raises, naming the subject
                flat[i * size:(i + 1) * size] = blob
                if subjects and subjects[-1] == sid:
                    counts[-1] += 1
                else:
                    subjects.append(sid)
                    counts.append(1)
                i += 1
            stale = [r[0] for r in self._db.execute(
                "SELECT DISTINCT subject_id FROM templates WHERE model_id != ? AND subject_id NOT IN "
                "(SELECT subject_id FROM templates WHERE model_id = ?) ORDER BY subject_id",
                (self.model_id, self.model_id))]
        finally:
            if began:
                self._db.execute("COMMIT")
        if sys.byteorder != "little":
            matrix.byteswap(inplace=True)   # stored little-endian
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if bad.size:
            owner = subjects[int(np.searchsorted(np.cumsum(counts), bad[0], side="right"))]
            self._template(matrix[bad[0]].astype("<f4").tobytes(), owner)   # raises, naming the subject
        index = TemplateMatrix.from_rows(subjects, np.array(counts, np.int64), matrix,
                                         faiss_min_templates=self.faiss_min_templates, threads=self.search_threads)
        return index, stale

    # --- decisions (each audited) -------------------------------------------------------------------
    @_db_errors
    def verify(self, embedding: np.ndarray, claim: str, threshold: float, frame_id: int | None = None,
               source: str = "", posture: str | None = None, cohort: Cohort | None = None) -> Verification:
        """1:1 verification of `claim`; raises ModelMismatchError for templates of another model.

        Without `posture`: against the nearest of the claim's templates. With the probe's predicted `posture`:
        against the claim's template in that posture (`verify_in_posture`), whose threshold is the bundle's
        posture_template_threshold, or with the bundle's `cohort` its S-normalised distance, whose threshold is
        the bundle's score_norm threshold (ModelBundle.verification_rule gives all three)."""
        if posture is None:
            v = verify(embedding, claim, self.templates(claim), threshold)
        else:
            v = verify_in_posture(embedding, claim, *self.templates_with_postures(claim), posture, threshold, cohort)
        with self._db:
            self._audit("verify", frame_id=frame_id, claim=claim, subject=claim if v.accepted else None,
                        distance=v.distance, threshold=threshold, accepted=v.accepted, source=source)
        return v

    @_db_errors
    def identify(self, embedding: np.ndarray, threshold: float, top_k: int = 3, frame_id: int | None = None,
                 source: str = "") -> Identification:
        """1:N identification with open-set rejection over the subjects enrolled with the current model."""
        _, gallery, stale, index = self._current()
        if not gallery:
            msg = f"no subject is enrolled with the current model {self.model_id}"
            if stale:
                msg += f" ({len(stale)} enrolled with other models: re-enrol them with `thz enroll`)"
                raise ModelMismatchError(msg)
            raise GalleryRequestError(msg + f" in {self.path}; enrol subjects with `thz enroll`")
        if stale:
            log.warning("subjects enrolled with another model are not searched; re-enrol them",
                        extra={"stale_subjects": len(stale)})
        ident = identify(embedding, index, threshold, top_k)
        best = ident.candidates[0][1] if ident.candidates else None
        with self._db:
            self._audit("identify", frame_id=frame_id, subject=ident.identity, distance=best, threshold=threshold,
                        accepted=ident.identity is not None, source=source)
        return ident

    @_db_errors
    def audit_log(self, limit: int = 100) -> list[dict]:
        cur = self._db.execute("SELECT * FROM decisions ORDER BY id DESC LIMIT ?", (limit,))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def _audit(self, kind: str, frame_id: int | None = None, claim: str | None = None, subject: str | None = None,
               distance: float | None = None, threshold: float | None = None, accepted: bool | None = None,
               source: str = "") -> None:
        self._db.execute(
            "INSERT INTO decisions(ts, kind, model_id, frame_id, claim, subject, distance, threshold, accepted, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self._clock(), kind, self.model_id, frame_id, claim, subject, distance, threshold,
             None if accepted is None else int(accepted), source))

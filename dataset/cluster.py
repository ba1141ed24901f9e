"""The dataset builder's distributed engine: Dask distributed, a LocalCluster here or a cluster of the site.

`open_client(workers, scheduler)` yields a `distributed.Client`: with no scheduler address, of a
LocalCluster of `workers` processes of one thread each on loopback (no dashboard, distributed's logs at
ERROR, one Numba / OpenMP / BLAS thread per worker, workers that leave Ctrl-C to the main process); with one, of the cluster already running there (a
`dask scheduler` started by hand, or by dask-jobqueue on a SLURM/PBS site: docs/processing.md).

`run_ordered(client, fn, jobs, keys, on_result)` submits fn(job) for every job with a priority that
keeps the given order (the scheduler hands out the first jobs first, so a build stopped part way has
made a prefix of that order, give or take the units in flight), and calls on_result with each result
in the main process as its future completes: that is where the progress bar moves. Ctrl-C (or any
exception in on_result) cancels what is still queued before it propagates; a worker that dies on the
same job `distributed.scheduler.allowed-failures` + 1 times is reported as WorkerDied, one line.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from dataset.errors import BadSchedulerAddress, SchedulerUnreachable, WorkerDied, WorkerSetupFailed
from thzcore.logs import get_logger

if TYPE_CHECKING:
    from distributed import Client

log = get_logger(__name__)
CONNECT_TIMEOUT_S = 10.0  # how long `--scheduler ADDRESS` may take to answer before the build gives up
SINGLE_THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "OPENBLAS_NUM_THREADS": "1"}
# The environment a local worker process starts with (distributed.nanny.pre-spawn-environ, set before the
# spawn). distributed's default also sets MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap
# threshold: every large NumPy array of a capture is then mmap'd and unmapped again, and a unit took 0.26 s
# of CPU instead of 0.15 s (measured, 29 units, sys time most of the difference). None leaves it unset.
# Workers log only what is critical: their failures reach the build through the futures (one line each), and a
# heartbeat that finds the scheduler gone while a stopped build closes printed a traceback (seen in CI).
WORKER_ENV: dict[str, str | None] = {**SINGLE_THREAD_ENV, "MALLOC_TRIM_THRESHOLD_": None,
                                     "DASK_LOGGING__DISTRIBUTED": "critical"}


def _quiet_distributed() -> None:
    """distributed logs every worker start and stop at INFO; a build shows its own progress instead."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # inherited by worker processes
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                 "distributed.core", "distributed.comm"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _connect(scheduler: str, timeout_s: float) -> "Client":
    from distributed import Client

    try:
        return Client(scheduler, timeout=timeout_s)
    except (OSError, TimeoutError):
        raise SchedulerUnreachable(f"no Dask scheduler answered at {scheduler} within {timeout_s:g} s; start one "
                                   "(`dask scheduler`) or drop --scheduler to build on a local cluster") from None
    except ValueError as exc:
        raise BadSchedulerAddress(f"{scheduler!r} is not a scheduler address (tcp://HOST:PORT): {exc}") from None


def _apply_environ(env: dict[str, str | None]) -> None:
    """Set each of env in os.environ; None unsets."""
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Worker processes started in this block ignore SIGINT: a terminal's Ctrl-C reaches the whole process
    group, and the build's main process, not each worker, cancels the jobs and ends the cluster."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored signal stays ignored across exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def _environ_kept(keys: Iterable[str]) -> Iterator[None]:
    """os.environ's `keys` as they were before the block, after it: distributed's nanny writes its
    pre-spawn-environ into this process's environment at every (re)spawn of a worker and leaves it there, and
    a NUMBA_NUM_THREADS left behind makes Numba's next compile here refuse to run once its threads are up."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        _apply_environ(saved)


@contextmanager
def open_client(workers: int, scheduler: str | None = None,
                connect_timeout_s: float | None = None) -> Iterator["Client"]:
    """A client of a fresh LocalCluster of `workers` single-threaded processes, or of `scheduler`.

    A local cluster is closed (its worker processes ended) when the block ends, however it ends; a
    cluster of the site is left running (only this build's queued jobs are cancelled)."""
    _quiet_distributed()
    if scheduler:
        client = _connect(scheduler, CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s)
        try:
            yield client
        finally:
            client.close(timeout=5)
        return
    from distributed import Client, LocalCluster

    with _environ_kept([*WORKER_ENV, "PYTHONHASHSEED"]):   # the nanny sets PYTHONHASHSEED too
        # distributed reads pre-spawn-environ with the OS environment taking precedence
        # (nanny._get_env_variables): an OMP_NUM_THREADS=2 exported by the caller (CI does) would reach every
        # worker, so the worker environment is this process's while the cluster lives (the nanny writes it
        # here at every spawn anyway); _environ_kept puts the caller's back
        _apply_environ(WORKER_ENV)
        with _sigint_ignored_by_children(), dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENV}):
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                                   # no dashboard; its health routes on a free loopback port, not a taken 8787
                                   scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close(timeout=5)
        finally:
            cluster.close(timeout=10)


class _CallOnWorkers(WorkerPlugin):
    """A WorkerPlugin that calls two picklable functions: at a worker's start and at its removal."""

    def __init__(self, setup: Callable[[], Any], teardown: Callable[[], Any]) -> None:
        self._setup = setup
        self._teardown = teardown

    def setup(self, worker: Any = None) -> None:
        self._setup()

    def teardown(self, worker: Any = None) -> None:
        self._teardown()


@contextmanager
def set_up_workers(client: "Client", name: str, setup: Callable[[], Any], teardown: Callable[[], Any]) -> Iterator[None]:
    """setup() once in every worker process (those that join later too, e.g. dask-jobqueue scaling up),
    before its first job; teardown() in each when the block ends (a site's workers outlive the build)."""
    try:
        client.register_plugin(_CallOnWorkers(setup, teardown), name=name)
    except Exception as exc:  # noqa: BLE001 - raised in a worker, sent back as a plain Exception by distributed
        text = " ".join(str(exc).split())
        raise WorkerSetupFailed(f"the cluster's workers could not set up the build ({text}): start them from "
                                "this checkout (the same commit, its packages importable)") from None
    try:
        yield
    finally:
        try:
            client.unregister_worker_plugin(name)
        except Exception as exc:  # noqa: BLE001 - a cluster already closing (Ctrl-C) has nothing to tear down
            log.debug("worker plugin not removed", extra={"plugin": name, "error": repr(exc)})


def worker_count(client: "Client") -> int:
    """Workers connected to the scheduler now."""
    return len(client.scheduler_info().get("workers", {}))


def run_ordered(client: "Client", fn: Callable[[Any], Any], jobs: Sequence[Any], keys: Sequence[str],
                on_result: Callable[[Any], None]) -> None:
    """fn(job) for every job on the cluster, first jobs first; on_result(result) in completion order."""
    from distributed import KilledWorker, as_completed

    if len(keys) != len(jobs) or len(set(keys)) != len(keys):
        raise ValueError("run_ordered needs one distinct key per job")
    n = len(jobs)
    futures = [client.submit(fn, job, key=key, priority=n - i, pure=False) for i, (job, key) in
               enumerate(zip(jobs, keys))]
    try:
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except KilledWorker as exc:
                raise WorkerDied(_killed_message(exc)) from None
            on_result(result)
            fut.release()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending, force=True)


def _killed_message(exc: Any) -> str:
    """One line from distributed's KilledWorker (task, attempts, last worker), without its advice paragraph."""
    task = getattr(exc, "task", "?")
    tries = getattr(exc, "allowed_failures", None)
    where = getattr(getattr(exc, "last_worker", None), "address", "")
    tried = f"{tries + 1} tries" if isinstance(tries, int) else "retried"
    return (f"a dataset worker died while making {task} ({tried}{', last on ' + where if where else ''}): "
            "killed, out of memory, or a crash in native code")

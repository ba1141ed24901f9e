"""The dataset builder's named errors (thz/cli.py maps each to its exit code); no heavy imports here."""
from __future__ import annotations


class SchedulerUnreachable(ConnectionError):
    """`--scheduler ADDRESS` did not answer, or is not an address (the message names it)."""


class BadSchedulerAddress(ValueError):
    """`--scheduler` is not an address a Dask client can use (tcp://HOST:PORT, tls://..., ws://...)."""


class BuildFailed(RuntimeError):
    """A build stopped on a failure; what it made is kept and the message says how to continue."""


class WorkerDied(BuildFailed):
    """A worker process died (killed, out of memory, a crash in native code) on the same job every try."""


class WorkerSetupFailed(BuildFailed):
    """The cluster's workers could not make the build's worker (its code not importable there, a bad setting)."""


class WorkerCodeMismatch(BuildFailed):
    """A worker of the cluster runs other image code than this checkout: its images would not reproduce."""


class OutputNotShared(BuildFailed):
    """A worker writes where the build's main process does not see it (no shared filesystem)."""


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the build; what was made is kept and the summary so far written."""

"""Options shared by several commands, spelled one way everywhere.

`--identities LIST` is always a list of population indices (`80-83`, `3,7,12`: `thz run`, `thz train`,
`thz baselines`); a number of identities is `--n-identities N` (`thz sim dataset`, `thz sim demo`, `thz bench sim`).
Those three used to spell the count `--identities N`: that spelling still works there (hidden, with a note on
stderr), so scripts keep running.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

OLD_COUNT_NOTE = ("note: --identities N (a number) is spelled --n-identities N; --identities is a list of "
                  "population indices in the other commands (thz run --identities 80-83)")


def n_identities_option(help: str, default: int | None = None, type: Any = int) -> Callable:
    """`--n-identities N` (the function gets `n_identities`, `default` when neither spelling is given) and its
    old spelling `--identities N`, hidden."""
    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, n_identities: int | None = None, identities_count: int | None = None,
                    **kwargs: Any) -> Any:
            if identities_count is not None:
                if n_identities is not None and n_identities != identities_count:
                    raise click.UsageError(f"--identities {identities_count} and --n-identities {n_identities}: "
                                           "give --n-identities only")
                click.echo(OLD_COUNT_NOTE, err=True)
                n_identities = identities_count
            return f(*args, n_identities=default if n_identities is None else n_identities, **kwargs)
        wrapper = click.option("--identities", "identities_count", type=type, default=None, hidden=True,
                               help="old spelling of --n-identities")(wrapper)
        shown = f"{help}  [default: {default}]" if default is not None else help
        return click.option("--n-identities", "n_identities", type=type, default=None, help=shown)(wrapper)
    return deco

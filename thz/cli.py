"""The one `thz` command. Subcommands live in thz/commands/ and are imported only when used."""
from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import click

# Exit codes of every `thz` command (the table is in README.md, "Exit codes"); errors are mapped in
# `_exit_for` below and nowhere else, and a command exits with one of these names, never a bare number.
EXIT_OK = 0           # done; the answer is yes (accepted, identified, in tolerance, all current)
EXIT_NEGATIVE = 1     # ran to the end, and the answer is no: a claim rejected, a face not identified, a calibration
#                       out of tolerance or not current, a parity contract broken, a build with images that failed
EXIT_USAGE = 2        # the command line or the configuration is wrong (the message names the option or field),
#                       including a subject that is not enrolled and a prompt that cannot be answered (stdin closed)
EXIT_REFUSED = 3      # refused by a gate: exposure limit, stale or tampered calibration record, an enrolment ROI below
#                       inference.enroll_min_quality
EXIT_INPUT = 4        # an input file is unusable: model bundle, gallery, recording, image, dataset, calibration store
EXIT_DEVICE = 5       # a device, link or stage failed: galvo, receiver (absent, or lost after the retries), a stage
#                       of `thz run` that died or went silent
EXIT_INTERNAL = 70    # a bug: the one-line message names the exception; THZ_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM before the end: every stage stopped, what was done is kept

# options of the `thz` group that are accepted after the subcommand too (`thz run --sim --config x.toml`)
GLOBAL_OPTIONS = ("--config", "--log-level", "--log-format")


class ThzError(click.ClickException):
    """A failure shown as one line on stderr with its documented exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        # one line: the lines of a multi-line message (one per bad config field) joined with "; "
        super().__init__("; ".join(ln.strip() for ln in message.splitlines() if ln.strip()) or "failed")
        self.exit_code = exit_code


def error_for(exc: BaseException, default: int) -> ThzError:
    """A command's caught error as a ThzError: the code EXIT_CODES gives its type, else `default`."""
    code = exit_code_for(exc)
    return ThzError(str(exc) or type(exc).__name__, default if code is None else code)


# name -> "module:attribute" of a click command or group, imported on first use
COMMANDS: dict[str, str] = {
    "acquire": "thz.commands.acquire:acquire",
    "recover": "thz.commands.acquire:recover",
    "train": "thz.commands.train:train",
    "evaluate": "thz.commands.train:evaluate",
    "baselines": "thz.commands.train:baselines",
    "export": "thz.commands.train:export",
    "run": "thz.commands.run:run",
    "enroll": "thz.commands.run:enroll",
    "verify": "thz.commands.run:verify",
    "identify": "thz.commands.run:identify",
    "gallery": "thz.commands.gallery:gallery",
    "calibrate": "thz.commands.calibrate:calibrate",
    "schema": "thz.commands.schema:schema",
}
SIM_COMMANDS: dict[str, str] = {
    "demo": "thz.commands.demo:demo",
    "scanner": "thz.commands.scanner:scanner",
    "dataset": "thz.commands.dataset:dataset",
    "import-reference": "thz.commands.dataset:import_reference_cmd",
}
DATASET_COMMANDS: dict[str, str] = {
    "from-recordings": "thz.commands.dataset_recordings:from_recordings",
}
BENCHES: dict[str, str] = {
    "processing": "thz.commands.bench_processing:bench_processing",
    "sim": "thz.commands.bench_sim:bench_sim",
    "inference": "thz.commands.bench_inference:bench_inference",
    "pipeline": "thz.commands.bench_inference:bench_pipeline",
    "parity": "thz.commands.bench_inference:bench_parity",
    "gallery": "thz.commands.bench_gallery:bench_gallery",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported from `lazy` only when invoked or listed."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


# The named errors that commands let through, and the exit status of each: the one place that maps them
# (first match wins, so a subclass with its own code comes before its base).
EXIT_CODES: dict[str, int] = {
    "pipeline.prescan:ScanRefused": EXIT_REFUSED,  # the same code `thz calibrate` uses for an exposure refusal
    "thzcore.config:ConfigError": EXIT_USAGE,
    "thzcore.netsec:InsecureBindError": EXIT_USAGE,
    "acquisition.errors:ConfigurationError": EXIT_USAGE,
    "training.protocols:ProtocolError": EXIT_USAGE,   # `thz evaluate --protocol` that does not fit the data
    "inference.bundle:BundleError": EXIT_INPUT,
    "thzcore.bundle:ManifestError": EXIT_INPUT,
    "inference.gallery:GalleryRequestError": EXIT_USAGE,  # not enrolled, empty gallery: the command line is wrong
    "inference.gallery:GalleryError": EXIT_INPUT,
    "inference.sources:ImageError": EXIT_INPUT,
    "thzcore.frameimage:FrameImageError": EXIT_INPUT,
    "thzcore.recording:RecordingError": EXIT_INPUT,
    "thzcore.manifest:ManifestError": EXIT_INPUT,
    "sqlite3:DatabaseError": EXIT_INPUT,
    "calibration.store:CalibrationError": EXIT_INPUT,
    "pipeline.compose:JobConfigError": EXIT_USAGE,
    "pipeline.compose:JobError": EXIT_DEVICE,
    "acquisition.errors:AcquisitionError": EXIT_DEVICE,
    "dataset.errors:BadSchedulerAddress": EXIT_USAGE,
    "dataset.errors:SchedulerUnreachable": EXIT_DEVICE,  # `thz sim dataset --scheduler` that does not answer
    "dataset.errors:BuildFailed": EXIT_NEGATIVE,          # a worker died, or runs other code; made images kept
}


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status for a named error of EXIT_CODES (its module is loaded when it was raised), else None."""
    for name, code in EXIT_CODES.items():
        module, attr = name.split(":")
        cls = getattr(sys.modules.get(module), attr, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    return None


def _exit_for(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) of any exception escaping a command: EXIT_CODES first, then the
    errors of files that third-party readers raise (OS, HDF5, ONNX), else an internal error."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or name
    code = exit_code_for(exc)
    if code is not None:
        return code, text
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return EXIT_INPUT, f"{exc.strerror or name}: {exc.filename}" if getattr(exc, "filename", None) else text
    mods = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    if "h5py" in mods or (isinstance(exc, OSError) and "HDF5" in text):
        return EXIT_INPUT, f"not a readable HDF5 file: {text}"
    if mods & {"google", "onnx", "onnxruntime"}:
        return EXIT_INPUT, f"not a readable ONNX model: {name}: {text}"
    return EXIT_INTERNAL, f"internal error: {name}: {text} (set THZ_DEBUG=1 for the traceback)"


def _plain_exit(exc: click.ClickException) -> int:
    """The code of a command's plain ClickException, from the error it was raised for (its cause or context,
    which `raise ... from None` keeps): a named error's code, a bad value's EXIT_USAGE, else its own."""
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return exc.exit_code
    code, _ = _exit_for(cause)
    if code != EXIT_INTERNAL:
        return code
    return EXIT_USAGE if isinstance(cause, ValueError) else exc.exit_code


def _abort_exit(exc: click.exceptions.Abort) -> ThzError:
    """A prompt that ended without an answer: Ctrl-C (130), stdin closed (2), or the operator said no (1)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, KeyboardInterrupt):
        return ThzError("interrupted at a prompt", EXIT_INTERRUPTED)
    if isinstance(cause, EOFError):
        return ThzError("stdin is closed: a prompt needs an answer (run it on a terminal, pipe the answers in, "
                        "or pass --yes where the command has it)", EXIT_USAGE)
    return ThzError("Aborted: not confirmed, nothing done", EXIT_NEGATIVE)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the group's own options (GLOBAL_OPTIONS with their values) found after the subcommand to the front,
    so that `thz run --sim --config x.toml` means `thz --config x.toml run --sim`; `--` ends the search."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        name = a.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and ("=" in a or i + 1 < len(args)):
            take = 1 if "=" in a else 2
            front.extend(args[i:i + take])
            i += take
            continue
        rest.append(a)
        i += 1
    return front + rest


class ThzGroup(LazyGroup):
    """The top-level group: every exception a command lets escape becomes one line on stderr and the exit
    status of `_exit_for` (THZ_DEBUG=1 lets it through, traceback and all)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Abort as exc:
            raise _abort_exit(exc) from None
        except click.exceptions.ClickException as exc:
            if type(exc) is click.ClickException:  # a command's plain error: classified by what it was raised for
                exc.exit_code = _plain_exit(exc)
            raise
        except (click.exceptions.Exit, SystemExit):
            raise
        except KeyboardInterrupt as exc:  # the message of a command's own interruption (what was kept) is shown
            click.echo(" ".join(str(exc).split()) or "interrupted", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the one error path of the CLI
            if os.environ.get("THZ_DEBUG"):
                raise
            code, text = _exit_for(exc)
            raise ThzError(text, code) from None


@dataclass
class AppContext:
    config_path: str | None = None
    _settings: Any = field(default=None, repr=False)

    @property
    def settings(self):  # -> pipeline.settings.Settings
        if self._settings is None:
            from pipeline.settings import load_settings
            from thzcore.config import ConfigError
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise ThzError(str(exc), EXIT_USAGE) from None
        return self._settings


@click.group(cls=ThzGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="THZ_CONFIG",
              help="TOML config file (default: built-in defaults; env THZ_CONFIG).")
@click.option("--log-level", envvar="THZ_LOG_LEVEL", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", envvar="THZ_LOG_FORMAT", default="kv", show_default=True,
              type=click.Choice(["kv", "json"]))
@click.version_option(package_name="thz-face")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """thz-face: 340 GHz standoff face scanner, from galvo mirrors to verified identities."""
    from thzcore.logs import setup_logging
    setup_logging(log_level, log_format)
    ctx.obj = AppContext(config_path)
    if (config_path or os.environ.get("THZ_CONFIG")) and ctx.invoked_subcommand not in ("config", None):
        _ = ctx.obj.settings  # a config given is checked before any command runs, also by those that read little of it


@cli.group()
def config() -> None:
    """Check and show the configuration."""


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def config_validate(file: str) -> None:
    """Validate FILE; exit non-zero with the offending field named."""
    from pipeline.settings import load_settings
    from thzcore.config import ConfigError
    try:
        s = load_settings(file)
    except ConfigError as exc:
        raise ThzError(str(exc), EXIT_USAGE) from None
    click.echo(f"{file}: valid (scanner {s.scanner.scanner_id}, {s.scanner.raster.lines_per_frame} lines/frame)")


@config.command("show")
@click.option("--derived/--no-derived", default=True, help="also print the derived values")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML (derived values under `derived`)")
@click.pass_obj
def config_show(obj: AppContext, derived: bool, as_json: bool) -> None:
    """Print the effective configuration as TOML (a file `--config` reads back as it is), the derived values and
    the data folders in force as comments after it; `--json` for JSON."""
    from thzcore.config import to_toml

    s = obj.settings
    out: dict[str, Any] = s.model_dump(mode="json")
    values = _derived(s) if derived else {}
    if as_json:
        click.echo(json.dumps({**out, **({"derived": values} if derived else {})}, indent=2))
        return
    source = obj.config_path or os.environ.get("THZ_CONFIG") or "built-in defaults"
    text = f"# effective thz-face configuration (from {source})\n" + to_toml(out)
    if derived:
        text += "\n# derived (computed from the values above; not settable):\n" + "".join(
            f"#   {k} = {json.dumps(v)}\n" for k, v in values.items())
    click.echo(text, nl=False)


def _derived(s: Any) -> dict[str, Any]:
    sc = s.scanner
    return {
        "wavelength_mm": sc.optics.wavelength_m * 1e3,
        "rayleigh_range_m": sc.optics.rayleigh_range_m,
        "depth_of_focus_m": sc.optics.depth_of_focus_m,
        "divergence_deg": sc.optics.divergence_rad * 57.29577951308232,
        "lines_per_frame": sc.raster.lines_per_frame,
        "line_duration_ms": sc.raster.line_duration_s * 1e3,
        "frame_duration_s": sc.raster.frame_duration_s,
        "fast_amplitude_m": sc.raster.fast_amplitude_m,
        "pixel_pitch_x_mm": sc.raster.pixel_pitch_x_m * 1e3,
        "pixel_pitch_y_mm": sc.raster.pixel_pitch_y_m * 1e3,
        "servo_lag_ms": sc.raster.servo_lag_s * 1e3,
        "chirp_slope_hz_per_s": sc.fmcw.slope_hz_per_s,
        "range_resolution_mm": sc.fmcw.range_resolution_m * 1e3,
        "range_window_m": [sc.fmcw.reference_range_m, sc.fmcw.max_range_m],
        "beat_band_hz": list(sc.beat_band_hz),
        "gate_beat_band_hz": [sc.fmcw.beat_hz(s.processing.gate_min_m), sc.fmcw.beat_hz(s.processing.gate_max_m)],
        "chirp_period_us": sc.chirp_period_s * 1e6,
        "raw_frame_shape": list(sc.raw_frame_shape),
        "raw_frame_mb": sc.raw_frame_bytes / 1e6,
    }


@cli.group(cls=LazyGroup, lazy=SIM_COMMANDS)
def sim() -> None:
    """The virtual scanner: demo, device emulators, synthetic datasets."""


@cli.group("dataset", cls=LazyGroup, lazy=DATASET_COMMANDS)
def dataset_group() -> None:
    """Datasets from a lab's own data: HDF5 recordings + a label sheet (the synthetic one: `thz sim dataset`)."""


@cli.group(cls=LazyGroup, lazy=BENCHES)
def bench() -> None:
    """Benchmarks that print a table (speed targets live here, not in unit tests)."""


def main() -> None:
    cli(prog_name="thz")


if __name__ == "__main__":
    main()

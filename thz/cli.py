"""The one `thz` command. Subcommands live in thz/commands/ and are imported only when used."""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click

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
}
SIM_COMMANDS: dict[str, str] = {
    "demo": "thz.commands.demo:demo",
    "scanner": "thz.commands.scanner:scanner",
    "dataset": "thz.commands.dataset:dataset",
    "import-reference": "thz.commands.dataset:import_reference_cmd",
}
BENCHES: dict[str, str] = {
    "processing": "thz.commands.bench_processing:bench_processing",
    "sim": "thz.commands.bench_sim:bench_sim",
    "inference": "thz.commands.bench_inference:bench_inference",
    "pipeline": "thz.commands.bench_inference:bench_pipeline",
    "parity": "thz.commands.bench_inference:bench_parity",
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


# The named errors that commands let through, and the exit status of each: the one place that maps them.
EXIT_CODES: dict[str, int] = {
    "pipeline.prescan:ScanRefused": 3,  # the same code `thz calibrate` uses for an exposure refusal
}


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status for a named error of EXIT_CODES (its module is loaded when it was raised), else None."""
    for name, code in EXIT_CODES.items():
        module, attr = name.split(":")
        cls = getattr(sys.modules.get(module), attr, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    return None


class ThzGroup(LazyGroup):
    """The top-level group: a named error of EXIT_CODES is printed on stderr and ends with its exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                raise
            click.echo(str(exc), err=True)
            ctx.exit(code)


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
                raise click.ClickException(str(exc)) from None
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
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(f"{file}: valid (scanner {s.scanner.scanner_id}, {s.scanner.raster.lines_per_frame} lines/frame)")


@config.command("show")
@click.option("--derived/--no-derived", default=True, help="also print the derived values")
@click.pass_obj
def config_show(obj: AppContext, derived: bool) -> None:
    """Print the effective configuration as TOML-like JSON, with derived values."""
    s = obj.settings
    out: dict[str, Any] = s.model_dump(mode="json")
    if derived:
        sc = s.scanner
        out["derived"] = {
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
    click.echo(json.dumps(out, indent=2))


@cli.group(cls=LazyGroup, lazy=SIM_COMMANDS)
def sim() -> None:
    """The virtual scanner: demo, device emulators, synthetic datasets."""


@cli.group(cls=LazyGroup, lazy=BENCHES)
def bench() -> None:
    """Benchmarks that print a table (speed targets live here, not in unit tests)."""


def main() -> None:
    cli(prog_name="thz")


if __name__ == "__main__":
    main()

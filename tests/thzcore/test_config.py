"""Config: derived values against hand-computed numbers, and errors that name the field."""
import math
import subprocess
import sys

import pytest

from pipeline.settings import Settings, load_settings, settings_from_dict
from thzcore.config import ConfigError
from thzcore.scanner import SPEED_OF_LIGHT, ScannerConfig


def test_derived_values_of_defaults():
    s = ScannerConfig()
    # lambda = c / 340 GHz = 0.8817 mm; z_R = pi (7.5 mm)^2 / lambda = 0.2004 m
    assert s.optics.wavelength_m == pytest.approx(0.8817e-3, rel=1e-3)
    assert s.optics.rayleigh_range_m == pytest.approx(0.2004, rel=1e-3)
    assert s.optics.depth_of_focus_m == pytest.approx(0.4008, rel=1e-3)
    # theta0 = lambda / (pi w0) = 2.14 deg
    assert math.degrees(s.optics.divergence_rad) == pytest.approx(2.14, abs=0.01)
    # 32 Hz bidirectional / 1 Hz slow -> 64 lines of 15.625 ms
    assert s.raster.lines_per_frame == 64
    assert s.raster.line_duration_s == pytest.approx(15.625e-3)
    # 45 cm / 256 = 1.758 mm; 45 cm / 64 = 7.03 mm
    assert s.raster.pixel_pitch_x_m == pytest.approx(1.7578e-3, rel=1e-4)
    assert s.raster.pixel_pitch_y_m == pytest.approx(7.031e-3, rel=1e-3)
    # c / 2B at 15 GHz = 9.99 mm
    assert s.fmcw.range_resolution_m == pytest.approx(SPEED_OF_LIGHT / 30e9)
    # one bin of N samples spans one range cell
    assert s.fmcw.range_bin(s.fmcw.reference_range_m + s.fmcw.range_resolution_m) == pytest.approx(1.0)
    assert s.raw_frame_shape == (64, 512, 128)


def test_servo_lag_matches_second_order_phase():
    s = ScannerConfig()
    r = 32.0 / 300.0
    phase = math.atan2(2 * 0.6 * r, 1 - r * r)
    assert s.raster.servo_lag_s == pytest.approx(phase / (2 * math.pi * 32.0))
    assert 0.2e-3 < s.raster.servo_lag_s < 1.1e-3


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"scanner\.optics\.carier_hz: unknown key"):
        settings_from_dict({"scanner": {"optics": {"carier_hz": 3e11}}})


def test_inconsistent_samples_per_chirp_names_field():
    with pytest.raises(ConfigError, match="samples_per_chirp"):
        settings_from_dict({"scanner": {"fmcw": {"samples_per_chirp": 100}}})


def test_chirps_that_do_not_fit_a_line_are_rejected():
    with pytest.raises(ConfigError, match="chirps_per_line"):
        settings_from_dict({"scanner": {"fmcw": {"chirps_per_line": 1000}}})


def test_gate_outside_range_window_is_rejected():
    with pytest.raises(ConfigError, match="gate_max_m"):
        settings_from_dict({"processing": {"gate_max_m": 7.0}})


def test_field_of_view_beyond_galvo_limit_is_rejected():
    with pytest.raises(ConfigError, match="max_fast_amplitude_m"):
        settings_from_dict({"scanner": {"raster": {"fov_x_m": 0.9}}})


def test_default_toml_loads(tmp_path):
    s = load_settings("config/default.toml")
    assert s == Settings()  # the shipped file states the defaults


@pytest.mark.integration
def test_cli_validate_exit_code_and_message(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scanner.raster]\nfill_fraction = 1.5\n")
    r = subprocess.run([sys.executable, "-m", "thz.cli", "config", "validate", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "scanner.raster.fill_fraction" in r.stderr
    r = subprocess.run([sys.executable, "-m", "thz.cli", "config", "validate", "config/default.toml"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_config_show_prints_toml_that_reads_back(tmp_path):
    """`thz config show` prints TOML (the derived values as comments): saved as a file it is the same config;
    `--json` prints JSON with the derived values."""
    import json
    import tomllib

    from click.testing import CliRunner

    from thz.cli import cli

    cfg = tmp_path / "site.toml"
    cfg.write_text('[scanner]\nscanner_id = "lab-7 \\"north\\""\n[scanner.raster]\nslow_axis_hz = 2.0\n'
                   '[processing]\nframes_averaged = 4\n')
    r = CliRunner().invoke(cli, ["--config", str(cfg), "config", "show"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"# effective thz-face configuration (from {cfg})")
    assert "\n[scanner.raster]\n" in r.stdout and "#   lines_per_frame = 32" in r.stdout
    back = tmp_path / "shown.toml"
    back.write_text(r.stdout)
    assert load_settings(back).model_dump(mode="json") == load_settings(cfg).model_dump(mode="json")
    assert tomllib.loads(r.stdout)["scanner"]["scanner_id"] == 'lab-7 "north"'
    r = CliRunner().invoke(cli, ["--config", str(cfg), "config", "show", "--json"])
    out = json.loads(r.stdout)
    assert out["processing"]["frames_averaged"] == 4 and out["derived"]["lines_per_frame"] == 32

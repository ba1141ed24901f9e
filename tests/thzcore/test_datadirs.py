"""The data directory: $THZ_DATA_DIR, else the config's data_dir, else the per-user one; never the checkout."""
from __future__ import annotations

import json
from pathlib import Path

import platformdirs
from click.testing import CliRunner

from pipeline.settings import Settings, load_settings
from thz.cli import cli
from thzcore import datadirs

REPO = Path(__file__).resolve().parents[2]


def test_env_wins_over_config_and_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("THZ_DATA_DIR", str(tmp_path / "env"))
    assert datadirs.data_dir("/srv/thz") == tmp_path / "env"
    monkeypatch.delenv("THZ_DATA_DIR")
    assert datadirs.data_dir("/srv/thz") == Path("/srv/thz")
    assert datadirs.data_dir() == Path(platformdirs.user_data_dir("thz-face", appauthor=False))


def test_default_is_the_per_user_data_dir_outside_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("THZ_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    user = Path(platformdirs.user_data_dir("thz-face", appauthor=False))
    for p in (s.calibration.store, s.inference.gallery, s.inference.report_dir, s.acquisition.record_dir):
        assert Path(p).is_absolute() and Path(p).is_relative_to(user), p
        assert not Path(p).is_relative_to(REPO) and not Path(p).is_relative_to(tmp_path), p


def test_settings_fill_each_empty_path_from_the_data_dir(thz_data_dir):
    s = Settings()
    assert Path(s.calibration.store) == thz_data_dir / "calibration"
    assert Path(s.inference.gallery) == thz_data_dir / "gallery.sqlite"
    assert Path(s.inference.report_dir) == thz_data_dir / "reports"
    assert Path(s.acquisition.record_dir) == thz_data_dir / "recordings"
    assert s.calibration.store_dir == thz_data_dir / "calibration"


def test_config_data_dir_and_an_explicit_path(monkeypatch, tmp_path):
    monkeypatch.delenv("THZ_DATA_DIR")
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "site"}"\n[inference]\ngallery = "~/g.sqlite"\n')
    s = load_settings(cfg)
    assert Path(s.calibration.store) == tmp_path / "site" / "calibration"
    assert s.inference.gallery_path == Path.home() / "g.sqlite"  # an explicit path wins, ~ expanded
    # a round trip (the config stored in a recording) keeps the resolved folders
    assert Settings.model_validate(s.model_dump()).calibration.store == s.calibration.store


def test_a_section_alone_resolves_its_default_lazily(thz_data_dir):
    from acquisition.config import AcquisitionConfig
    from calibration.config import CalibrationConfig
    from inference.config import InferenceConfig
    assert CalibrationConfig().store == "" and CalibrationConfig().store_dir == thz_data_dir / "calibration"
    assert InferenceConfig().gallery_path == thz_data_dir / "gallery.sqlite"
    assert InferenceConfig().report_root == thz_data_dir / "reports"
    assert AcquisitionConfig().record_root == thz_data_dir / "recordings"


def test_config_show_names_the_data_dir(thz_data_dir):
    import tomllib
    r = CliRunner().invoke(cli, ["config", "show", "--no-derived"])
    assert r.exit_code == 0, r.output
    out = tomllib.loads(r.stdout)  # TOML, as the config file is
    assert out["calibration"]["store"] == str(thz_data_dir / "calibration")
    assert out["inference"]["gallery"] == str(thz_data_dir / "gallery.sqlite")


def test_commands_use_the_data_dir_not_the_working_dir(thz_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["calibrate", "status"])
    assert json.loads(r.stdout.splitlines()[-1])["store"] == str(thz_data_dir / "calibration")
    r = CliRunner().invoke(cli, ["gallery", "list"])
    assert str(thz_data_dir / "gallery.sqlite") in r.output
    assert list(tmp_path.iterdir()) == []  # nothing written where the command ran

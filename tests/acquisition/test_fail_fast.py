"""The hardware path fails fast: a device path that does not exist ends the start at once, with its name."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from acquisition.errors import DeviceNotFound
from acquisition.session import check_device_paths, device_path
from pipeline.settings import Settings
from thz.cli import EXIT_DEVICE, EXIT_USAGE, cli


@pytest.mark.parametrize("address, path", [
    ("/dev/ttyUSB0", "/dev/ttyUSB0"),
    ("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"),
    ("ASRL/dev/ttyACM1::INSTR", "/dev/ttyACM1"),
    ("asrl/dev/ttyS3", "/dev/ttyS3"),
    ("ASRL1::INSTR", None),                       # a numbered board: not a file
    ("COM3", None),                               # Windows
    ("socket://127.0.0.1:7777", None),            # pyserial URLs
    ("rfc2217://lab:2217", None),
    ("TCPIP::127.0.0.1::5025::SOCKET", None),     # the receiver on the network
    ("USB0::0x0957::0x1796::MY123::INSTR", None),
])
def test_device_path(address, path):
    assert device_path(address) == path


def test_a_missing_port_is_named(tmp_path):
    real = tmp_path / "tty"
    real.write_text("")
    acq = Settings().acquisition.model_copy(update={"galvo_port": str(real),
                                                    "receiver_resource": "ASRL/dev/nonexistent-rx::INSTR"})
    with pytest.raises(DeviceNotFound, match=r"receiver resource /dev/nonexistent-rx does not exist.*receiver_resource"):
        check_device_paths(acq)
    check_device_paths(acq.model_copy(update={"receiver_resource": "TCPIP::127.0.0.1::5025::SOCKET"}))


def _missing_port_config(tmp_path):
    cfg = tmp_path / "hw.toml"
    cfg.write_text('[acquisition]\ngalvo_port = "/dev/ttyUSB-thz-absent"\n')
    return str(cfg)


def test_acquire_fails_at_once_without_retrying(tmp_path):
    """Issue 17: `thz acquire` retried a missing /dev/ttyUSB0 8 times over 36 s."""
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, ["--config", _missing_port_config(tmp_path), "acquire", "--frames", "1",
                                 "--out", str(tmp_path / "rec"), "--no-publish"])
    elapsed = time.monotonic() - t0
    assert r.exit_code == EXIT_DEVICE, r.output
    assert elapsed < 5.0, f"{elapsed:.1f} s"  # the default backoff would take 36 s
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["status"] == "failed" and "/dev/ttyUSB-thz-absent does not exist" in res["reason"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "acquisition.galvo_port" in lines[0]
    events = [json.loads(ln)["event"] for ln in open(res["runlog"])]
    assert "backoff" not in events and "recovery_failed" not in events


def test_calibrate_checks_the_ports_before_asking_for_a_target(tmp_path):
    """Issue 17: `thz calibrate snr` asked for the flat plate, then failed 30 s later on the galvo port."""
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, ["--config", _missing_port_config(tmp_path), "calibrate", "snr",
                                 "--store", str(tmp_path / "store")], input="\n" * 10)
    assert r.exit_code == EXIT_DEVICE, r.output
    assert time.monotonic() - t0 < 5.0
    assert ">>>" not in r.output and "Place" not in r.output  # nobody was asked to place anything
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "/dev/ttyUSB-thz-absent does not exist" in errors[0]


@pytest.mark.integration
def test_calibrate_on_hardware_with_stdin_closed_says_so(tmp_path):
    """The emulator stands in for the lab's devices: they are identified, the first prompt meets a closed stdin."""
    from sim.emulators.client import SimScanner

    s = Settings()
    lab = SimScanner.start(s, seed=5, realtime=False)
    try:
        ends = lab.settings_for(s).acquisition
        cfg = tmp_path / "lab.toml"
        cfg.write_text(f'[acquisition]\ngalvo_port = "{ends.galvo_port}"\nreceiver_resource = "{ends.receiver_resource}"\n')
        r = CliRunner().invoke(cli, ["--config", str(cfg), "calibrate", "snr", "--store", str(tmp_path / "st")],
                               input="")
    finally:
        lab.stop()
    assert r.exit_code == EXIT_USAGE, r.output
    assert r.stderr.count(">>>") == 1  # asked once, then stopped: no measurement attempted
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "stdin is closed" in errors[0]
    assert "no measurement" not in r.output and '"error": ""' not in r.output

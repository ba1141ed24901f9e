"""`thz acquire` and `thz recover`: results as a JSON last line on stdout, logs on stderr."""
from __future__ import annotations

import json
import sys

import click

from thz.cli import EXIT_DEVICE, EXIT_USAGE, ThzError


@click.command("acquire")
@click.option("--sim", is_flag=True, help="start the virtual scanner (`thz sim scanner`) and acquire from it")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="frames to record (default: until stopped)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="directory of the session's HDF5 file and run log (default: acquisition.record_dir, else recordings/ in the data directory)")
@click.option("--seed", type=int, default=None, help="with --sim: simulator seed (default: sim.seed)")
@click.option("--realtime/--fast", default=True, show_default=True,
              help="with --sim: frames at the slow-axis rate, or as fast as they are computed")
@click.option("--publish/--no-publish", default=True, show_default=True, help="publish `raw` and `status` on ZMQ")
@click.option("--record/--no-record", default=None, help="write the HDF5 file (default: acquisition.record)")
@click.option("--allow-stale-calibration", is_flag=True, help="use a stale calibration record (with a warning)")
@click.option("--identity", type=click.IntRange(min=0), default=None,
              help="with --sim: place this simulated subject (population index) in front of the scanner "
                   "(default: an empty field)")
@click.option("--posture", default="front-center", show_default=True, help="with --sim --identity: head posture")
@click.option("--concealed/--unconcealed", default=False, show_default=True,
              help="with --sim --identity: the subject wears the balaclava")
@click.pass_obj
def acquire(obj, sim: bool, frames: int | None, out_dir: str | None, seed: int | None, realtime: bool,
            publish: bool, record: bool | None, allow_stale_calibration: bool, identity: int | None, posture: str,
            concealed: bool) -> None:
    """Connect, identify, configure and stream frames to HDF5 and ZMQ until FRAMES are recorded or stopped.

    With --sim --identity N a simulated subject stands in the field; each recorded frame keeps the
    simulator's truth in its meta, so the recording can be processed and scored offline."""
    from acquisition.daemon import AcquisitionDaemon
    from sim.emulators.client import SimScanner

    from acquisition.errors import ConfigurationError
    from acquisition.publish import check_bind

    from pipeline.prescan import prepare_scan

    scene = None
    if identity is not None:
        if not sim:
            raise click.UsageError("--identity places a simulated subject: it needs --sim")
        from sim.scene import Subject
        from thzcore.labels import POSTURES
        if posture not in POSTURES:
            raise click.BadParameter(f"{posture!r} is not one of {list(POSTURES)}", param_hint="--posture")
        if identity >= obj.settings.sim.n_identities:
            raise click.BadParameter(f"{identity} is outside the simulated population of sim.n_identities="
                                     f"{obj.settings.sim.n_identities}", param_hint="--identity")
        scene = Subject(identity=identity, posture=posture, concealed=concealed).model_dump(mode="json")
    settings, _ = prepare_scan(obj.settings, allow_stale=allow_stale_calibration, sim=sim)  # exposure + calibration id
    a = settings.acquisition
    if publish:  # refuse an unauthenticated public bind before starting anything
        try:
            check_bind(a.raw_endpoint, a.curve_secret_key_file, a.curve_clients_dir, "raw_endpoint")
            check_bind(a.status_endpoint, a.curve_secret_key_file, a.curve_clients_dir, "status_endpoint")
        except ConfigurationError as exc:
            raise ThzError(f"configuration error: {exc}", EXIT_USAGE) from None
    emu = None
    truth = None
    sim_seed = None
    try:
        if sim:
            sim_seed = settings.sim.seed if seed is None else seed
            try:
                emu = SimScanner.start(settings, seed=sim_seed, realtime=realtime)
            except RuntimeError as exc:
                raise ThzError(f"the virtual scanner did not start: {exc}", EXIT_DEVICE) from None
            settings = emu.settings_for(settings)
            truth = emu.backdoor.truth
            if scene is not None:
                emu.backdoor.set_scene(scene)
        daemon = AcquisitionDaemon(settings, out_dir=out_dir, sim_seed=sim_seed, publish=publish, record=record,
                                   truth=truth)
        daemon.install_signal_handlers()
        result = daemon.run(frames=frames)
    finally:
        if emu is not None:
            emu.stop()
    if result.status == "failed":  # the one error line, as every command writes it
        click.echo(f"Error: acquisition failed: {result.reason}", err=True)
    elif result.exit_code != 0:
        click.echo(f"thz acquire: {result.status}: {result.reason}", err=True)
    click.echo(json.dumps(result.as_dict()))
    sys.exit(result.exit_code)  # the daemon's RunResult codes are the policy's (acquisition.daemon EXIT_*)


@click.command("recover")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--keep-original/--discard-original", default=True, show_default=True,
              help="keep the crashed file as FILE.crashed")
def recover(file: str, keep_original: bool) -> None:
    """Repair and close a recording left by a crash: every complete frame is kept, readable without SWMR."""
    from acquisition.recover import recover as do_recover

    res = do_recover(file, keep_original=keep_original)  # RecordingError: the CLI's input error (exit 4)
    click.echo(json.dumps(res.as_dict()))

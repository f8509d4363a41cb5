"""The `recorder` command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recorder")
def main() -> None:
    """Field recorder for the sensor streams of smart glasses."""


@main.command()
@click.option("--devices", "-n", default=1, show_default=True, type=click.IntRange(1, 10000),
              help="Number of devices streaming at once; device 0 is the time-domain-mapping broadcaster.")
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds of data per device.")
@click.option("--url", default="https://localhost:6768", show_default=True, help="Recorder to send to.")
@click.option("--profile", default="profile9", show_default=True,
              type=click.Choice(["profile9", "mp_streaming_demo"]), help="Sensor rates and sizes.")
@click.option("--batch-period-ms", default=200, show_default=True, type=click.IntRange(1, 10000),
              help="The glasses send one batch of messages per period.")
@click.option("--one-sample-per-message", is_flag=True,
              help="Every sample message carries one sample (the receiver's worst case).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Same seed, same devices (serials) and same data.")
@click.option("--session-id", type=click.UUID,
              help="Session id every device sends [default: a fresh one per device and run]. A session the "
                   "recorder already has is a reconnect: records it holds are resends, not stored again.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA certificate to trust for the recorder (e.g. root_ca.pem).")
@click.option("--no-verify-server-certs", is_flag=True, help="Skip server certificate verification.")
@click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="Device certificate (PEM).")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Device private key (PEM).")
@click.option("--token", envvar="RECORDER_TOKEN", default=None,
              help="Device token sent as `Authorization: Bearer` (recorder serve --tokens) [env: RECORDER_TOKEN].")
@click.option("--fast", is_flag=True, help="Send as fast as possible instead of in real time.")
@click.option("--request-seconds", default=0.0, type=click.FloatRange(min=0.0),
              help="End each request after this many seconds of data and start another (0: one request).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each device's body and headers under this folder instead of sending.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Give up on a recorder that takes no data, or gives no answer, for this many seconds.")
def simulate(devices, duration, url, profile, batch_period_ms, one_sample_per_message, seed, session_id, ca_file,
             no_verify_server_certs, client_cert, client_key, token, fast, request_seconds, out_dir, timeout):
    """Play simulated devices: stream them to a recorder, or write their bodies to files.

    Exits with 1 if a device failed or the recorder already had records it was sent."""
    import uuid

    import trio

    from .sim import sender
    from .sim.fleet import make_fleet
    from .sim.progress import FleetProgress

    session_ids = [str(session_id or uuid.uuid4()) for _ in range(devices)]
    fleet = make_fleet(devices, seed=seed, profile=profile, batch_period_ms=batch_period_ms,
                       one_sample_per_message=one_sample_per_message, session_ids=session_ids)
    period = batch_period_ms / 1000
    reports: list[sender.DeviceReport] = []
    interrupted = False
    if out_dir is not None:
        with FleetProgress(fleet, duration, verb="writing") as progress:
            try:
                sender.write_fleet(fleet, out_dir, duration_s=duration, batch_period_s=period,
                                   on_progress=progress.advance, on_done=progress.finished, reports=reports)
            except KeyboardInterrupt:
                interrupted = True
    else:
        try:
            target = sender.Target.parse(url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--url") from None
        context = None
        if target.tls:
            context = sender.client_ssl_context(ca_file, not no_verify_server_certs, client_cert, client_key)
        with FleetProgress(fleet, duration) as progress:
            try:
                trio.run(lambda: sender.stream_fleet(
                    fleet, url, context, duration_s=duration, batch_period_s=period, fast=fast,
                    request_seconds=request_seconds, timeout_s=timeout, on_progress=progress.advance,
                    on_done=progress.finished, reports=reports, token=token))
            except* KeyboardInterrupt:  # trio may deliver Ctrl+C wrapped in an exception group
                interrupted = True
    if interrupted:
        sender.mark_interrupted(reports, fleet)
        click.echo(f"interrupted (Ctrl+C); what was {'written' if out_dir else 'sent'} so far:")
    click.echo(sender.summary(reports))
    if interrupted:
        sys.exit(130)
    if not sender.succeeded(reports):
        sys.exit(1)


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=6768, show_default=True, type=click.IntRange(0, 65535), help="HTTPS port (0: any free port).")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where sessions are written: <data-dir>/<device-serial>/<session-id>/.")
@click.option("--certs-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder with subscriber.pem, subscriber-key.pem and root_ca.pem "
                   "[default: ~/.aria/streaming-certs/persistent].")
@click.option("--verify-clients", is_flag=True, help="Require device certificates signed by root_ca.pem.")
@click.option("--tokens", "tokens_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Token file made by `recorder tokens add`: devices must send a token allowed to write their "
                   "serial, readers of /status, /metrics and /feed a read token (re-read when it changes). "
                   "[default: no token checks]")
@click.option("--plain-http", is_flag=True, help="Serve plain HTTP instead of HTTPS.")
@click.option("--idle-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds of silence after which a connection is closed.")
@click.option("--session-grace", default=30.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds a session waits for its device to reconnect before it is finalised.")
@click.option("--keep-finished", default=600.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds a finished session stays in /status, /metrics and the final summary's list; it "
                   "stays on disk (recorder ls) and a device that comes back later continues it.")
@click.option("--blob-level", default=None, type=click.IntRange(-7, 19),
              help="zstd level for audio and opaque bytes [default: 3]. RAW images, stored with PNG's Up filter, "
                   "take level 1, or this level if it is lower; frames a codec compressed (H.264, H.265, JPEG, "
                   "Opus) take -1. Lower levels take less CPU and more disk: for more devices per core.")
@click.option("--raw-images", type=click.Choice(["auto", "compress", "store"]), default="auto", show_default=True,
              help="RAW camera frames compressed (PNG's Up filter, zstd level 1), or stored as they come: "
                   "three times their disk for about a third less CPU per byte. auto: compressed while the "
                   "server has CPU to spare, stored as they come while it has none (a worker's event loop "
                   "busy all the time), so that it keeps up with more devices than it can compress for.")
@click.option("--rtmp-port", default=1935, show_default=True, type=click.IntRange(0, 65535),
              help="RTMP port for glasses that push RTMP (Mentra Live in unmanaged mode); 0 turns RTMP off.")
@click.option("--rtmps-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port for RTMP in TLS (rtmps://), with the server's certificate; 0: off.")
@click.option("--rtmp-grace", default=60.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds an RTMP stream waits for a re-publish to the same key before it is finished.")
@click.option("--rtmp-key", "rtmp_keys", multiple=True,
              help="Allow only this stream key to publish (repeat for several).")
@click.option("--rtmp-secret", envvar="RECORDER_RTMP_SECRET", default=None,
              help="Publishers must add ?secret=<this> to the stream URL [env: RECORDER_RTMP_SECRET].")
@click.option("--max-connections", default=1024, show_default=True, type=click.IntRange(min=0),
              help="Open HTTP connections past which a new device is answered 503 with Retry-After (0: no limit).")
@click.option("--max-connections-per-address", default=64, show_default=True, type=click.IntRange(min=0),
              help="The same, for the connections from one client address (0: no limit).")
@click.option("--max-memory-in-flight", default=512, show_default=True, type=click.IntRange(min=0),
              help="MiB received and not yet written, across all devices, past which a new device is answered "
                   "503 (0: no limit).")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Ingest processes, each with its own event loop, sharing the port: one per core records the "
                   "most devices. A device's session goes on whichever worker it reconnects to; a worker that "
                   "dies is started again while the others keep recording. The limits above are shared out. "
                   "[default: the number of cores]")
@click.option("--worker", "worker_spec", default=None, hidden=True)
@click.option("--worker-run-dir", default=None, hidden=True)
@click.option("--worker-fds", default=None, hidden=True)
@click.option("--worker-rtmp-fds", default="-1,-1", hidden=True)
@click.pass_context
def serve(ctx, host, port, data_dir, certs_dir, verify_clients, tokens_file, plain_http, idle_timeout, session_grace,
          keep_finished, blob_level, raw_images,
          rtmp_port, rtmps_port, rtmp_grace, rtmp_keys, rtmp_secret, max_connections, max_connections_per_address,
          max_memory_in_flight, workers, worker_spec, worker_run_dir, worker_fds, worker_rtmp_fds):
    """Receive devices' streams and record every session to disk."""
    import functools

    import trio

    from . import certs
    from .process import ConfigurationError, WorkerPlace, check_data_dir
    from .process import serve as run_process
    from .rtmp.access import AccessPolicy
    from .rtmp.config import RtmpConfig
    from .server.config import ServerConfig
    from .storage import Store
    from .supervisor import SERVER_STARTED_ENV, SUPERVISOR_PID_ENV, default_count, serve_with_workers, shared_out

    config = ServerConfig(host=host, port=port, data_dir=data_dir, certs_dir=certs_dir or certs.DEFAULT_FOLDER,
                          tls=not plain_http, verify_clients=verify_clients, tokens_file=tokens_file,
                          idle_timeout_s=idle_timeout,
                          session_grace_s=session_grace, keep_finished_s=keep_finished, max_connections=max_connections,
                          max_connections_per_address=max_connections_per_address,
                          max_memory_in_flight=max_memory_in_flight << 20)
    rtmp = RtmpConfig(port=rtmp_port, tls_port=rtmps_port, host=host, grace_s=rtmp_grace, idle_timeout_s=idle_timeout,
                      policy=AccessPolicy(frozenset(rtmp_keys), rtmp_secret or None))
    if plain_http and verify_clients:
        raise click.UsageError("--verify-clients needs TLS; drop --plain-http")
    if plain_http and rtmps_port:
        raise click.UsageError("--rtmps-port needs the server's certificate; drop --plain-http")
    place = None
    if worker_spec is not None:
        index, count = (int(n) for n in worker_spec.split("/"))
        place = WorkerPlace(index, count, Path(worker_run_dir), tuple(int(fd) for fd in worker_fds.split(",")),
                            tuple(int(fd) for fd in worker_rtmp_fds.split(",")), limits={
                                "max_connections": config.max_connections,
                                "max_connections_per_address": config.max_connections_per_address,
                                "max_memory_in_flight": config.max_memory_in_flight,
                                "retry_after_s": config.retry_after_s},
                            server_started_ns=int(os.environ.get(SERVER_STARTED_ENV, time.time_ns())))
        place.die_with_supervisor(int(os.environ[SUPERVISOR_PID_ENV]))
        config = shared_out(config, count)
    try:
        check_data_dir(data_dir)
        if workers is None:
            workers = default_count()
        store = Store(data_dir, blob_level=blob_level, raw_images=raw_images)
        if workers > 1 and place is None:
            sys.exit(serve_with_workers(config, rtmp, store, workers, _options_for_workers(ctx), rtmp_secret))
        trio.run(functools.partial(run_process, config, store, rtmp=rtmp, worker=place))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# serve's options that are not passed on to its workers as they were given.
NOT_FOR_WORKERS = frozenset({"workers", "worker_spec", "worker_run_dir", "worker_fds", "worker_rtmp_fds",
                             "rtmp_secret"})


def _options_for_workers(ctx: click.Context) -> list[str]:
    """serve's options as given, for its workers' command lines."""
    return [a for p in ctx.command.params if p.name not in NOT_FOR_WORKERS for a in _given(p, ctx.params[p.name])]


def _given(param: click.Parameter, value) -> list[str]:
    """An option's value as command-line arguments again."""
    option = max(param.opts, key=len)
    if value is None or value is False:
        return []
    if getattr(param, "is_flag", False):
        return [option]
    if getattr(param, "multiple", False):
        return [a for v in value for a in (option, str(v))]
    return [option, str(value)]


@main.group()
def certs() -> None:
    """Development certificates for TLS between devices and the recorder."""


@certs.command("init")
@click.option("--dir", "folder", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Certificates folder [default: ~/.aria/streaming-certs/persistent].")
@click.option("--hostname", "hostnames", multiple=True, help="Extra name or address the server is reached by.")
def certs_init(folder, hostnames):
    """Create a development CA, server and device certificates where they are missing.

    Never overwrites a file: certificates already in the folder (the vendor's streaming
    certificates, say) are used as they are, and a missing one is created only when
    root_ca-key.pem is there to sign it."""
    from . import certs as certs_module

    folder = folder or certs_module.DEFAULT_FOLDER
    try:
        report = certs_module.init(folder, list(hostnames))
    except OSError as exc:
        raise click.ClickException(f"cannot write certificates in {folder}: {exc.strerror or exc}") from None
    click.echo(f"certificates in {folder}:")
    if report.found:
        click.echo(f"  kept     {', '.join(report.found)} (already there, not touched)")
    if report.written:
        click.echo(f"  created  {', '.join(report.written)}")
    reasons: dict[str, list[str]] = {}
    for name, reason in report.not_created.items():
        reasons.setdefault(reason, []).append(name)
    for reason, names in reasons.items():
        click.echo(f"  missing  {', '.join(names)}: not created, {reason}")
    for name, lacking in report.strictly_refused.items():
        click.echo(f"  note     {name} has no {lacking}: clients that verify strictly (Python 3.13 and newer by "
                   "default) refuse it; certificates made by this version's `certs init` have one")
    needed = " and ".join(certs_module.SERVE_NEEDS)
    if not report.serve_ready:
        lacking = " and ".join(n for n in certs_module.SERVE_NEEDS if n in report.not_created)
        raise click.ClickException(f"`recorder serve` needs {lacking} in {folder}, which `certs init` cannot create "
                                   "there (see above): copy the server's certificate and key in, or give --dir an "
                                   "empty folder for new development certificates")
    click.echo(f"`recorder serve --certs-dir {folder}` has what it needs ({needed})")


@main.group()
def tokens() -> None:
    """Device and reader tokens for `recorder serve --tokens FILE`.

    A token is shown once, when it is made; the file keeps only its SHA-256, so a lost token
    is revoked and replaced, never recovered."""


TOKEN_FILE = click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                          help="The token file (the one given to `recorder serve --tokens`).")


@tokens.command("add")
@TOKEN_FILE
@click.option("--serial", "serials", multiple=True, help="A device serial the token may write (repeatable).")
@click.option("--any-serial", is_flag=True, help="May write any serial (a bridge forwarding several glasses).")
@click.option("--read", is_flag=True, help="May read /status, /metrics and /feed.")
@click.option("--label", default="", help="What the token is for (shown by `tokens list`).")
def tokens_add(path, serials, any_serial, read, label):
    """Make a token, print it once, and store its hash in the file (kept tokens stay)."""
    from . import tokens as tokens_module

    if not (serials or any_serial or read):
        raise click.UsageError("say what the token may do: --serial S (repeatable), --any-serial or --read")
    if serials and any_serial:
        raise click.UsageError("--serial and --any-serial: give one of them")
    try:
        token, entry = tokens_module.add(path, label=label, serials=serials, any_serial=any_serial, read=read)
    except (tokens_module.TokenFileError, OSError) as exc:
        raise click.ClickException(str(exc) if isinstance(exc, tokens_module.TokenFileError)
                                   else f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(token)
    click.echo(f"token {entry.id} ({entry.permissions()}) added to {path}; it is shown only now: "
               "keep it where the device or reader can send it as `Authorization: Bearer <token>`", err=True)


@tokens.command("list")
@TOKEN_FILE
def tokens_list(path):
    """The tokens in the file: id, creation time, permissions and label (never the token)."""
    from . import tokens as tokens_module

    try:
        entries = tokens_module.read_file(path)
    except tokens_module.TokenFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not entries:
        click.echo(f"no tokens in {path}")
        return
    for entry in entries:
        click.echo(f"{entry.id}  {entry.created}  {entry.permissions()}" + (f"  {entry.label}" if entry.label else ""))


@tokens.command("revoke")
@TOKEN_FILE
@click.argument("token_id")
def tokens_revoke(path, token_id):
    """Remove the token TOKEN_ID (an id from `tokens list`, or a label only one token has).
    A running `recorder serve --tokens` refuses it within about a second."""
    from . import tokens as tokens_module

    try:
        entry = tokens_module.revoke(path, token_id)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    except tokens_module.TokenFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked token {entry.id} ({entry.permissions()})" + (f" {entry.label}" if entry.label else ""))


@main.command("ls")
@click.argument("data_dir", default="data", type=click.Path(exists=True, file_okay=False, path_type=Path))
def ls(data_dir):
    """List the recorded sessions under DATA_DIR: devices' sessions, then RTMP streams.
    DATA_DIR may also be one device's folder (its sessions)."""
    from .rtmp.listing import format_rtmp_ls
    from .rtmp.recording_layout import is_recording
    from .storage.summary import format_ls, listed_sessions, plural

    sessions = listed_sessions(data_dir, skip=is_recording)
    rtmp = format_rtmp_ls(data_dir)
    if sessions or not rtmp:
        click.echo(format_ls(data_dir, sessions))
    if rtmp:
        click.echo(("\n" if sessions else "") + rtmp)
    found = []
    if sessions:
        devices = len({p.parent for p in sessions})
        found.append(f"{plural(len(sessions), 'session')} of {plural(devices, 'device')}")
    if rtmp:
        found.append(plural(len(rtmp.splitlines()) - 1, "RTMP recording"))
    if found:
        click.echo(f"\n{' and '.join(found)} under {data_dir}")


@main.command()
@click.argument("session", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(session, as_json):
    """Streams, counts, rates, durations, sizes, gaps and TDM of one session (or the codecs,
    frames, publishes and MP4 of an RTMP recording)."""
    import json

    from .rtmp.listing import format_recording_info, recording_info
    from .rtmp.recording_layout import is_recording
    from .storage import layout
    from .storage.summary import format_info, not_a_session, session_info

    if is_recording(session):
        details = recording_info(session)
        click.echo(json.dumps(details, indent=1) if as_json else format_recording_info(details))
        return
    if not layout.is_session_folder(session):
        raise click.ClickException(not_a_session(session, skip=is_recording))
    details = session_info(session)
    click.echo(json.dumps(details, indent=1) if as_json else format_info(details))


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
def recover(path):
    """Repair unfinished sessions under PATH (a data folder, one session or one RTMP recording)
    after a crash. A recovered RTMP recording is finished too (index tables and MP4)."""
    from .rtmp.recording import Recording
    from .rtmp.recording_layout import is_recording
    from .rtmp.recording_recovery import recover_recording, unfinished_recordings
    from .storage import Store, layout
    from .storage import recover as recover_session

    def recover_rtmp(folder):
        report = recover_recording(folder)
        if report.state != "finished":
            Recording.reopen(folder).finish()
        return report

    if is_recording(path):
        reports = [recover_rtmp(path)]
    elif layout.is_session_folder(path):
        reports = [recover_session(path)]
    else:
        reports = Store(path).recover_all() + [recover_rtmp(f) for f in unfinished_recordings(path)]
    for report in reports:
        click.echo(str(report))
    if not reports:
        click.echo("nothing to recover")



@main.command()
@click.argument("sessions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to_url", metavar="URL",
              help="Re-stream the sessions to this recorder as their devices did (http:// or https://), "
                   "or RTMP recordings to an RTMP server (rtmp://host/<app>/[<key>]).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Pace by device time: 1 real time, 2 twice as fast, 0 as fast as possible.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA certificate to trust for the server (e.g. root_ca.pem).")
@click.option("--no-verify-server-certs", is_flag=True, help="Skip server certificate verification.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Give up on a server that takes no data, or gives no answer, for this many seconds.")
@click.option("--token", envvar="RECORDER_TOKEN", default=None,
              help="With --to https://: a device token allowed to write the sessions' serials (an --any-serial "
                   "token for several devices), for a recorder run with --tokens [env: RECORDER_TOKEN].")
@click.option("--handler", metavar="MODULE:FACTORY",
              help="Replay into the SDK callbacks of FACTORY(), called once per device to make its "
                   "StreamDataInterface (MODULE in the current folder or on PYTHONPATH).")
@click.option("--start", type=float, metavar="S", help="With --handler: start S seconds into the timeline.")
@click.option("--end", type=float, metavar="S", help="With --handler: end S seconds into the timeline.")
@click.option("--streams", metavar="A,B", help="With --handler: only these streams (e.g. camera-rgb,imu-left).")
@click.option("--loop", is_flag=True, help="With --handler: start again at the end, until Ctrl+C.")
def replay(sessions, to_url, speed, ca_file, no_verify_server_certs, timeout, token, handler, start, end, streams, loop):
    """Replay recorded SESSIONS (session folders, RTMP recordings, or folders holding them).

    With --to, every session is sent at once, each on its own connection, as its device sent
    it: the same headers and calibration, the records re-encoded bit for bit, bodies that were
    not version 1 byte for byte. Exits with 1 if a session failed or the server already had it.

    With --handler, the sessions' rows are given to the vendor SDK's callbacks, all devices on
    one timeline (the broadcaster's clock), with a summary of the callbacks fired per device and
    stream. Exits with 1 if the replay stopped on an unreadable session."""
    if handler is not None:
        if to_url is not None:
            raise click.UsageError("--handler and --to are two modes of replay: give one of them")
        from .sdk.command import replay_to_handler
        from .sdk.replay import ReplayError

        try:
            code = replay_to_handler(list(sessions), handler, speed=speed, start=start, end=end, loop=loop,
                                     streams=[s for s in streams.split(",") if s] if streams else None)
        except ReplayError as exc:
            raise click.ClickException(str(exc)) from None
        sys.exit(code)
    if start is not None or end is not None or streams or loop:
        raise click.UsageError("--start, --end, --streams and --loop go with --handler")
    # --to: re-streaming to a server
    from .restream.report import succeeded, summary
    from .restream.run import NotReplayable
    from .restream.run import replay as replay_to

    if to_url is None:
        raise click.UsageError("say where to replay to: --handler MODULE:FACTORY or --to URL")
    try:
        reports, interrupted = replay_to(list(sessions), to_url, speed=speed, ca_file=ca_file,
                                         verify=not no_verify_server_certs, timeout_s=timeout, token=token)
    except NotReplayable as exc:
        raise click.ClickException(str(exc)) from None
    if interrupted:
        click.echo("interrupted (Ctrl+C); what was sent so far:")
    click.echo(summary(reports))
    if interrupted:
        sys.exit(130)
    if not succeeded(reports):
        sys.exit(1)


@main.command()
@click.argument("sessions", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "format_name", required=True, help="parquet, mp4, mcap, rerun or lerobot.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The file or folder to write (the format's suffix is added when missing).")
@click.option("--clock", default="broadcaster", show_default=True, type=click.Choice(["device", "broadcaster", "utc"]),
              help="The clock every row is put on: each device's own, the broadcaster's shared by all devices, "
                   "or that clock on wall-clock time (the mapping and its uncertainty go beside the export).")
@click.option("--start", help="Seconds from the earliest session's start, or an absolute time on the clock in ns "
                              "(e.g. 1714000000000000000ns).")
@click.option("--end", help="As --start; rows before it are exported.")
@click.option("--streams", help="Only these streams, comma separated (e.g. imu-left,camera-rgb).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--sync-rate", type=click.FloatRange(min=0.001), default=None,
              help="parquet: add a frames table, one row per tick at this rate (Hz), with every device's and "
                   "stream's nearest row, and the rows since the last tick for faster streams.")
@click.option("--lossless", is_flag=True, help="mp4: encode RAW camera frames exactly (libx264 qp 0; players that "
                                               "only know yuv420p refuse such files).")
@click.option("--fps", type=click.IntRange(min=1), default=None,
              help="lerobot: frames per second of the dataset (default 10): state and camera frames at each tick.")
def export(sessions, format_name, out, clock, start, end, streams, overwrite, sync_rate, lossless, fps):
    """Export SESSION... (session, device or data folders; several devices into one export) to a
    format other tools open."""
    from .export import ExportError
    from .export import export as run_export
    from .export.progress import ExportProgress

    options = {}
    if sync_rate is not None:
        if format_name != "parquet":
            raise click.UsageError("--sync-rate is an option of --format parquet")
        options["sync_rate_hz"] = sync_rate
    if lossless:
        if format_name != "mp4":
            raise click.UsageError("--lossless is an option of --format mp4")
        options["lossless"] = True
    if fps is not None:
        if format_name != "lerobot":
            raise click.UsageError("--fps is an option of --format lerobot")
        options["fps"] = fps
    with ExportProgress() as progress:
        try:
            summary = run_export(list(sessions), format_name, out, clock=clock, start=start, end=end,
                                 streams=[s for s in streams.split(",") if s] if streams else None,
                                 overwrite=overwrite, progress=progress.advance, on_job=progress.begin, **options)
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
        except (ValueError, OSError) as exc:  # a stored frame that does not decode, a full disk, ...
            raise click.ClickException(f"export failed, nothing was written under the output's name: "
                                       f"{type(exc).__name__}: {exc}") from None
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written under the output's name", err=True)
            sys.exit(130)
    click.echo(str(summary))


if __name__ == "__main__":
    main()

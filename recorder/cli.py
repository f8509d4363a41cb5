"""The `recorder` command line."""

from __future__ import annotations

import sys
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
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA certificate to trust for the recorder (e.g. root_ca.pem).")
@click.option("--no-verify-server-certs", is_flag=True, help="Skip server certificate verification.")
@click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="Device certificate (PEM).")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Device private key (PEM).")
@click.option("--fast", is_flag=True, help="Send as fast as possible instead of in real time.")
@click.option("--request-seconds", default=0.0, type=click.FloatRange(min=0.0),
              help="End each request after this many seconds of data and start another (0: one request).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each device's body and headers under this folder instead of sending.")
def simulate(devices, duration, url, profile, batch_period_ms, one_sample_per_message, seed, ca_file,
             no_verify_server_certs, client_cert, client_key, fast, request_seconds, out_dir):
    """Play simulated devices: stream them to a recorder, or write their bodies to files."""
    import trio

    from .sim import sender
    from .sim.fleet import make_fleet

    fleet = make_fleet(devices, seed=seed, profile=profile, batch_period_ms=batch_period_ms,
                       one_sample_per_message=one_sample_per_message)
    period = batch_period_ms / 1000
    if out_dir is not None:
        reports = sender.write_fleet(fleet, out_dir, duration_s=duration, batch_period_s=period)
    else:
        try:
            target = sender.Target.parse(url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--url") from None
        context = None
        if target.tls:
            context = sender.client_ssl_context(ca_file, not no_verify_server_certs, client_cert, client_key)
        reports = trio.run(lambda: sender.stream_fleet(
            fleet, url, context, duration_s=duration, batch_period_s=period, fast=fast,
            request_seconds=request_seconds))
    click.echo(sender.summary(reports))
    if any(r.error for r in reports):
        sys.exit(1)

"""The `recorder` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recorder")
def main() -> None:
    """Field recorder for the sensor streams of smart glasses."""

"""Lines for the operator watching `recorder serve`, from every part of the process: each starts
with the time of day, so that lines from devices and from publishers read as one log."""

from __future__ import annotations

import sys
import time


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stdout, flush=True)


def say_more(line: str) -> None:
    """A line that belongs to the one before it (a summary's rows): indented, no time."""
    print(f"  {line}", file=sys.stdout, flush=True)

"""A command run as a user at a terminal runs it: stdout and stderr on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess


def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdout and stderr; its exit code and output."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(terminal)
    output = bytearray()
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed: the command has exited
            break
        if not data:
            break
        output += data
    os.close(controller)
    return process.wait(timeout=60), output.decode(errors="replace")

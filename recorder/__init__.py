"""recorder: a field recorder for the sensor streams of smart glasses.

`recorder.open_session(path)` reads a recorded session back (see recorder.storage.reader).
"""

from __future__ import annotations


def __getattr__(name: str):
    # Imported on first use, so that the command line starts without loading pyarrow.
    if name == "open_session":
        from .storage import open_session

        return open_session
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")

"""recorder: a field recorder for the sensor streams of smart glasses.

Reading what it recorded (see recorder.reading):

    recorder.open_session(path) -> Session         one device session: tables, frames, audio, clocks
    recorder.open_dataset(data_dir, stream)        one pyarrow dataset of a stream over every session
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what editors and type checkers see; at run time they load on first use
    from .reading import Broadcaster, RawBody, Session, open_dataset, open_session

__all__ = ["Broadcaster", "RawBody", "Session", "open_dataset", "open_session"]


def __getattr__(name: str):
    # Loaded on first use, so that the command line starts without importing pyarrow.
    if name in __all__:
        from . import reading

        return getattr(reading, name)
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")

"""The reading API: recorded sessions back in Python, one at a time or a data folder at once.

`open_session(path)` gives a `Session` (tables, decoded camera frames, audio, clocks);
`open_dataset(path, stream)` gives one pyarrow dataset of a stream over every session under a
data folder. Replay, export and tests read sessions through these, never through file layouts.
"""

from .dataset import open_dataset
from .images import FrameError
from .session import RawBody, Session, open_session
from .timedomain import Broadcaster

__all__ = ["Broadcaster", "FrameError", "RawBody", "Session", "open_dataset", "open_session"]

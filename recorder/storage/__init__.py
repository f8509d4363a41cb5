"""Session storage: each device session a folder of Parquet streams and zstd blob files.

Store and SessionWriter are what the server writes with (from worker threads); recover()
repairs a folder a crash left open. Reading sessions back is recorder.reading's job. See
layout.py for what is where on disk.
"""

from .recovery import RecoveryReport, recover
from .session import SessionWriter
from .store import Store

__all__ = ["RecoveryReport", "SessionWriter", "Store", "recover"]

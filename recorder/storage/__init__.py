"""Session storage: each device session a folder of Parquet streams and zstd blob files.

Store and SessionWriter are what the server writes with (from worker threads); recover()
repairs a folder a crash left open; open_session() / SessionReader read a session back.
See layout.py for what is where on disk.
"""

from .reader import RawBody, SessionReader, open_session
from .recovery import RecoveryReport, recover
from .session import SessionWriter
from .store import Store

__all__ = ["RawBody", "RecoveryReport", "SessionReader", "SessionWriter", "Store", "open_session", "recover"]

"""Settings of the HTTP server devices stream to, with the defaults a new user gets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..certs import DEFAULT_FOLDER


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 6768
    data_dir: Path = Path("data")
    certs_dir: Path = DEFAULT_FOLDER
    tls: bool = True
    verify_clients: bool = False
    # The calibration header alone is tens of kilobytes; h11's default of 16 KiB is far too small.
    max_header_bytes: int = 4 << 20
    # A request head (line and headers) must arrive within this once its first byte has.
    header_timeout_s: float = 30.0
    # A connection that sends nothing for this long is closed (its session waits for a reconnect).
    idle_timeout_s: float = 60.0
    # A session with no connection for this long is finalised; a later reconnect resumes it.
    session_grace_s: float = 30.0
    receive_bytes: int = 256 << 10
    # Body bytes gathered before they are decoded and written together (bounds memory per connection).
    coalesce_bytes: int = 1 << 20
    # Received data reaches the disk within this (crash safety: at most the last second is lost).
    flush_interval_s: float = 0.5
    console_interval_s: float = 10.0

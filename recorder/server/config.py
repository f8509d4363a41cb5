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
    # The token file (`recorder tokens`): devices must send a token allowed to write their serial,
    # readers of /status, /metrics and /feed a read token. None: no token checks.
    tokens_file: Path | None = None
    # The calibration header alone is tens of kilobytes; h11's default of 16 KiB is far too small.
    max_header_bytes: int = 4 << 20
    # A request head (line and headers) must arrive within this once its first byte has.
    header_timeout_s: float = 30.0
    # A connection that sends nothing for this long is closed (its session waits for a reconnect).
    idle_timeout_s: float = 60.0
    # A session with no connection for this long is finalised; a later reconnect resumes it.
    session_grace_s: float = 30.0
    # A finished session leaves /status, /metrics and the server's memory this long after it
    # finished (it stays on disk, listed by `recorder ls`; a device that comes back later
    # continues it): a server that runs for days holds only its recent sessions.
    keep_finished_s: float = 600.0
    receive_bytes: int = 256 << 10
    # Body bytes gathered before they are decoded and written together (bounds memory per
    # connection). Much of a write's CPU is paid per call, per stream: 4 MiB rather than 1 took
    # the CPU per GB of profile9 over TLS from 17 to 15 s (RAW frames stored: 13.7 to 9), and the
    # paced devices sustained on 2 cores from 9 to 10 (stored: 12 to 16). 8 MiB gains little
    # more: a heavy device's writes then come every flush_interval_s instead.
    coalesce_bytes: int = 4 << 20
    # Received data reaches the disk within this (crash safety: at most the last second is lost).
    flush_interval_s: float = 0.5
    console_interval_s: float = 10.0
    # Overload: past one of these limits a new device is answered 503 with Retry-After instead
    # of slowing every device already recording (0: no limit). Only new connections are refused.
    # Open HTTP connections in all. The default is well past what one process records (1024
    # devices of a few MB/s each); set it to what the machine sustains (`make bench`'s ingest
    # figure). As it is, it guards against a runaway client or a flood taking sockets, tasks
    # and memory without bound.
    max_connections: int = 1024
    # Open connections from one client address: a flood from one host cannot take every place.
    # Not 1: a bridge in front of several glasses connects for all of them from one address.
    max_connections_per_address: int = 64
    # Body bytes received and not yet written, across all connections. Each connection holds at
    # most coalesce_bytes (plus one receive) and writes within flush_interval_s, so this grows
    # only when storage falls behind, which is when one more device slows all the others. The
    # default is some 128 connections each holding a full coalesce_bytes at once.
    max_memory_in_flight: int = 512 << 20
    # The Retry-After of a 503 for overload: soon enough that a refused device loses little (it
    # buffers meanwhile), far enough apart that refused retries do not become a load of their own.
    retry_after_s: int = 5

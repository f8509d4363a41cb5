"""Settings of the RTMP server, with the defaults a new user gets."""

from __future__ import annotations

from dataclasses import dataclass, field

from .access import AccessPolicy


@dataclass
class RtmpConfig:
    port: int = 1935
    # rtmps:// (RTMP in TLS, with the server's certificate); 0: off.
    tls_port: int = 0
    host: str = "0.0.0.0"
    # A re-publish to the same key within this continues the session (glasses retry a dropped
    # stream for a while, backing off); after it the session is finished and remuxed to MP4.
    grace_s: float = 60.0
    idle_timeout_s: float = 60.0
    handshake_timeout_s: float = 30.0
    flush_interval_s: float = 1.0
    # Received media is written in batches of this age or size (at most this much is lost to a
    # kill -9 besides what the kernel holds; it bounds the memory per connection too).
    coalesce_s: float = 0.1
    coalesce_bytes: int = 256 << 10
    # After a read that drained a publisher's socket, wait this long before the next one.
    read_pause_s: float = 0.1
    # At shutdown, data already waiting in a publisher's socket is taken in for at most this long.
    drain_s: float = 1.0
    console_interval_s: float = 10.0
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    sync: bool = True

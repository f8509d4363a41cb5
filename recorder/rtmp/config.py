"""Settings of the RTMP server, with the defaults a new user gets."""

from __future__ import annotations

from dataclasses import dataclass, field

from .access import AccessPolicy


@dataclass
class RtmpConfig:
    port: int = 1935
    host: str = "0.0.0.0"
    # A re-publish to the same key within this continues the session (glasses retry a dropped
    # stream for a while, backing off); after it the session is finished and remuxed to MP4.
    grace_s: float = 60.0
    idle_timeout_s: float = 60.0
    handshake_timeout_s: float = 30.0
    flush_interval_s: float = 1.0
    console_interval_s: float = 10.0
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    sync: bool = True

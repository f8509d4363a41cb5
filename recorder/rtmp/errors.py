"""The one exception the RTMP core raises for anything the peer does wrong."""

from __future__ import annotations


class RtmpProtocolError(Exception):
    """The peer broke the protocol, or asked for something this server does not do.

    str(error) says what. Where the protocol allows a reply, one that says the same is already
    queued: the transport should send data_to_send() and then close the connection. `events`
    holds what the peer completed before the violation (in the same receive_data call), so
    that nothing it sent in good order is lost.
    """

    def __init__(self, description: str, events: list | None = None):
        super().__init__(description)
        self.description = description
        self.events = events if events is not None else []

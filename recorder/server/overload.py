"""Overload protection: past a number of open connections (in all, or from one client address)
or of body bytes received and not yet written, a new device is answered 503 with Retry-After
instead of slowing every device already recording.

What counts, and what is refused:
- Every HTTP connection counts against max_connections and max_connections_per_address from
  the moment it is accepted until it closes, whatever it asks for (a connection is a socket, a
  task and a receive buffer before its first request says what it wants): a reader of /status
  within the limits holds a place like any other (a scraper holds one). One that finds a
  limit reached when it opens holds no place: its request head is still read (bounded by the
  header size limit and timeout), so that it gets a proper HTTP answer.
- Refused with 503 (and closed): such a connection's device request (POST) or live-feed reader
  (GET /feed), and a device's first request on a new connection while the bytes in flight are
  at their limit. The operator's GET /status, /healthz and /metrics are always answered, on any
  connection: they are small, and an overloaded server is when they are needed most. A request
  that is wrong anyway still gets its 4xx.
- Never refused: a further request on a connection already admitted as a device's, and a
  device's reconnect that takes over its own session from a connection still open (that one
  closes as this one begins, so the count does not grow). Nothing already recording is cut off
  or slowed: limits apply when a device arrives, never while it streams.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass

from . import console

MIB = 1 << 20
REASONS = ("max_connections", "max_connections_per_address", "max_memory_in_flight")
# Connections past a limit open at once (reading their head, answered, or asking /status).
# Past this many, a further one is closed at once without an answer: a flood then costs at
# most this many sockets beyond the limits, each waited for no longer than the header timeout.
MAX_PAST_LIMITS = 256
# The console says a limit refused connections at most once per this, with the count since.
REPORT_INTERVAL_S = 5.0


def address_of(remote: str) -> str:
    """The client's address without its port ("10.0.0.5:51234" -> "10.0.0.5", IPv6 alike)."""
    return remote.rsplit(":", 1)[0] if ":" in remote else remote


@dataclass(eq=False)
class Ticket:
    """One open connection's standing."""

    address: str
    over: str | None = None  # the limit it found reached when it opened (then it holds no place)
    counted: bool = False  # it holds a place in the counts
    device: bool = False  # a device's request was admitted on it: its further requests are too
    unanswered: bool = False  # too many past the limits at once: closed without an answer


class Overload:
    def __init__(self, config):
        self.max_connections = config.max_connections
        self.max_per_address = config.max_connections_per_address
        self.max_memory = config.max_memory_in_flight
        self.retry_after_s = config.retry_after_s
        self.open = 0  # connections holding a place
        self.by_address: dict[str, int] = {}
        self.past_limits = 0  # connections open that hold no place
        self.memory_in_flight = 0
        self.refused = dict.fromkeys(REASONS, 0)
        self.closed_unanswered = 0
        self._unreported: dict[str, Counter] = {reason: Counter() for reason in REASONS}
        self._unreported_unanswered = dict.fromkeys(REASONS, 0)
        self._reported_at = dict.fromkeys(REASONS, -math.inf)

    # -- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self, remote: str):
        """A Ticket for a connection while it is open."""
        ticket = self._open(address_of(remote))
        try:
            yield ticket
        finally:
            self._close(ticket)

    def _open(self, address: str) -> Ticket:
        ticket = Ticket(address)
        if self.max_connections and self.open >= self.max_connections:
            ticket.over = "max_connections"
        elif self.max_per_address and self.by_address.get(address, 0) >= self.max_per_address:
            ticket.over = "max_connections_per_address"
        if ticket.over is None:
            self._count(ticket)
        elif self.past_limits >= MAX_PAST_LIMITS:
            ticket.unanswered = True
            self.closed_unanswered += 1
            self._unreported_unanswered[ticket.over] += 1
            self.refuse(ticket, ticket.over)
        else:
            self.past_limits += 1
        return ticket

    def _count(self, ticket: Ticket) -> None:
        ticket.counted = True
        self.open += 1
        self.by_address[ticket.address] = self.by_address.get(ticket.address, 0) + 1

    def _close(self, ticket: Ticket) -> None:
        if ticket.counted:
            ticket.counted = False
            self.open -= 1
            left = self.by_address[ticket.address] - 1
            if left:
                self.by_address[ticket.address] = left
            else:
                del self.by_address[ticket.address]
        elif ticket.over is not None and not ticket.unanswered:
            self.past_limits -= 1

    # -- admission ------------------------------------------------------------------------------

    def admit_device(self, ticket: Ticket, *, takeover: bool = False) -> str | None:
        """None if a device's request on this connection may go on, else the limit that refuses it."""
        if ticket.device:
            return None
        if takeover:
            # It replaces a connection that holds a place and is closing: it takes a place even
            # past the limit, for the moment both are open.
            if not ticket.counted:
                self.past_limits -= 1
                ticket.over = None
                self._count(ticket)
        elif ticket.over is not None:
            return ticket.over
        elif self.max_memory and self.memory_in_flight >= self.max_memory:
            return "max_memory_in_flight"
        ticket.device = True
        return None

    def hold(self, delta: int) -> None:
        """Body bytes received (positive) or written, or let go (negative)."""
        self.memory_in_flight += delta

    # -- what is said ---------------------------------------------------------------------------

    def limit_text(self, reason: str) -> str:
        if reason == "max_connections":
            return f"{self.max_connections} open connections"
        if reason == "max_connections_per_address":
            return f"{self.max_per_address} per address"
        return f"{_size(self.max_memory)} received and not yet written"

    def message(self, reason: str, address: str) -> str:
        """What a refused device is told: which limit, and what to do."""
        if reason == "max_connections":
            why = f"the recorder has {self.max_connections} connections open, its limit (max_connections)"
        elif reason == "max_connections_per_address":
            why = (f"the recorder has {self.max_per_address} connections open from {address}, its limit per "
                   f"client address (max_connections_per_address)")
        else:
            why = (f"the recorder holds {_size(self.memory_in_flight)} received and not yet written, its limit "
                   f"is {_size(self.max_memory)} (max_memory_in_flight): storage is behind")
        return (f"overloaded: {why}; devices already recording go on. Retry in {self.retry_after_s} s "
                f"(Retry-After); a session resumes where it left off")

    def refuse(self, ticket: Ticket, reason: str) -> None:
        """Count a refusal; the console hears of it now or with the next report."""
        self.refused[reason] += 1
        self._unreported[reason][ticket.address] += 1
        self.report(time.monotonic(), only=reason)

    def report(self, now: float, only: str | None = None) -> None:
        """One console line per limit that refused connections since its last line, at most one
        per REPORT_INTERVAL_S; called on each refusal, and once a second for what is left."""
        for reason in (only,) if only else REASONS:
            addresses = self._unreported[reason]
            if not addresses or now - self._reported_at[reason] < REPORT_INTERVAL_S:
                continue
            self._reported_at[reason] = now
            console.overloaded(sum(addresses.values()), _addresses(addresses), self.limit_text(reason),
                               self.retry_after_s, self._unreported_unanswered[reason])
            addresses.clear()
            self._unreported_unanswered[reason] = 0

    def report_all(self) -> None:
        """At shutdown: the refusals not yet said."""
        self.report(math.inf)

    def status(self) -> dict:
        return {
            "limits": {"max_connections": self.max_connections,
                       "max_connections_per_address": self.max_per_address,
                       "max_memory_in_flight": self.max_memory, "retry_after_s": self.retry_after_s},
            "open_connections": self.open,
            "connections_past_limits": self.past_limits,
            "busiest_addresses": dict(Counter(self.by_address).most_common(5)),
            "memory_in_flight": self.memory_in_flight,
            "refused": dict(self.refused),
            "closed_unanswered": self.closed_unanswered,
        }


def _size(n: int) -> str:
    return f"{n / MIB:.4g} MiB" if n >= MIB else f"{n} bytes"


def _addresses(counts: Counter) -> str:
    top = counts.most_common(3)
    if len(counts) == 1:
        return top[0][0]
    text = ", ".join(f"{address} ({n})" for address, n in top)
    return text + (f" and {len(counts) - 3} more addresses" if len(counts) > 3 else "")

"""The clock an export puts every device's rows on, chosen on purpose.

- `device`: each device's own capture clock, as stored (devices are not aligned with each other).
- `broadcaster`: the clock every device of a multi-device recording shares, the broadcaster's,
  reached through each receiver's time domain mapping (Session.to_broadcaster_time).
- `utc`: the broadcaster's clock moved onto wall-clock time (ns since 1970). The recorder knows
  when data arrived, not when it was captured: the offset is taken from the broadcaster's
  session at its first arrival (first wall-clock time minus first device time), and its
  uncertainty is how much that difference moves between the first and the last arrival
  (batching and network delay). Both are written beside the export (`clock.json`).

Tools such as Foxglove refuse files that mix small (boot-relative) and real-epoch times, so one
export has one clock for all its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..reading import Session
from ..storage.timemap import to_broadcaster_time

CLOCKS = ("device", "broadcaster", "utc")


@dataclass
class ExportClock:
    name: str
    sessions: list[Session]
    utc_offset_ns: int = 0
    utc_uncertainty_ns: int | None = None
    utc_reference: str | None = None  # the serial whose arrival times define the utc mapping
    notes: list[str] = field(default_factory=list)
    _mappings: dict = field(default_factory=dict, repr=False)  # session path -> (capture_ns, offset_ns)

    @classmethod
    def choose(cls, name: str, sessions: list[Session]) -> ExportClock:
        if name not in CLOCKS:
            raise ValueError(f"unknown clock {name!r}: choose one of {', '.join(CLOCKS)}")
        clock = cls(name, sessions)
        if name != "device":
            for session in sessions:
                if session.broadcaster.role == "broadcaster_or_unsynchronised" and len(sessions) > 1:
                    clock.notes.append(f"{session.serial} has no time domain mapping and no session beside it "
                                       f"names it the broadcaster: its rows stay on its own clock")
        if name == "utc":
            clock._map_to_wall_clock()
        return clock

    def _map_to_wall_clock(self) -> None:
        reference = next((s for s in self.sessions if s.broadcaster.role == "broadcaster"), None)
        reference = reference or next((s for s in self.sessions if s.broadcaster.role != "receiver"), None)
        reference = reference or self.sessions[0]
        m = reference.manifest
        needed = ("first_wall_time_ns", "first_device_time_ns", "last_wall_time_ns", "last_device_time_ns")
        if any(m.get(k) is None for k in needed):
            raise ValueError(f"{reference.path}: its manifest has no arrival times, so utc cannot be reached; "
                             f"choose --clock broadcaster or device")
        # The reference's device times are on the broadcaster's clock only if it is the broadcaster;
        # a receiver's are mapped first.
        first = int(reference.to_broadcaster_time([m["first_device_time_ns"]])[0])
        last = int(reference.to_broadcaster_time([m["last_device_time_ns"]])[0])
        at_first = m["first_wall_time_ns"] - first
        at_last = m["last_wall_time_ns"] - last
        self.utc_offset_ns = int(at_first)
        self.utc_uncertainty_ns = int(abs(at_last - at_first))
        self.utc_reference = reference.serial

    def times(self, session: Session, device_ns: np.ndarray) -> np.ndarray:
        """Device times (int64 ns) of `session` on this clock."""
        t = np.asarray(device_ns, np.int64)
        if self.name == "device":
            return t.copy()
        mapping = self._mappings.get(session.path)
        if mapping is None:  # read once per session, not once per batch
            tdm = session.tdm()
            mapping = self._mappings[session.path] = (tdm.column("capture_timestamp_ns").to_numpy(),
                                                      tdm.column("offset_ns").to_numpy())
        mapped = to_broadcaster_time(t, *mapping) if len(mapping[0]) else t.copy()
        return mapped + self.utc_offset_ns if self.name == "utc" else mapped

    def description(self) -> dict:
        """What clock.json says beside the export."""
        described = {"clock": self.name, "unit": "ns", "notes": self.notes}
        if self.name == "utc":
            described.update(
                epoch="1970-01-01T00:00:00Z", reference_device=self.utc_reference,
                offset_from_broadcaster_ns=self.utc_offset_ns, uncertainty_ns=self.utc_uncertainty_ns,
                method="offset = the reference session's first arrival (recorder wall clock) minus its first "
                       "device time on the broadcaster's clock; uncertainty = how far that difference moved "
                       "by its last arrival")
        elif self.name == "broadcaster":
            described["epoch"] = "the broadcaster device's capture clock"
        else:
            described["epoch"] = "each device's own capture clock"
        return described

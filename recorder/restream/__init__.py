"""Sending recorded sessions to a server again as their devices sent them (`recorder replay
--to URL`): the records re-encoded from storage bit for bit, bodies that were not version 1
byte for byte, paced by device time."""

from .records import Record, records

__all__ = ["Record", "records"]

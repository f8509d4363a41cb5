"""AMF0, the value encoding of RTMP commands and data messages (Adobe's "Action Message Format
-- AMF 0" specification).

    decode_all(data) -> list     every value in `data`
    decode(data, offset) -> (value, end offset)
    encode(*values) -> bytes

Decoded values are plain Python: number -> float, boolean -> bool, string and long string ->
str, object -> dict, ECMA array -> EcmaArray (a dict), strict array -> list, null and
undefined -> None, date -> datetime in UTC (or the float of milliseconds when it is outside
datetime's range or not finite), XML document -> str, typed object -> dict (the class name is
dropped). References, movie clips, record sets and the switch to AMF3 are not supported.

Anything malformed raises Amf0Error with a message that says what and where; the decoder never
lets IndexError, struct.error or UnicodeDecodeError out, since its input comes from the network.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
MOVIECLIP = 0x04
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
RECORDSET = 0x0E
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11

# Objects inside arrays inside objects...: a real command or onMetaData is a few levels deep.
# The bound keeps a hostile message from exhausting Python's stack.
MAX_DEPTH = 32

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class Amf0Error(ValueError):
    """Bytes that are not valid AMF0 (or a value AMF0 cannot carry)."""


class EcmaArray(dict):
    """A dict that encodes as an ECMA array (what onMetaData usually carries) rather than an
    object. Decoding gives ECMA arrays back as this type, so they round-trip."""


class _Undefined:
    """The AMF0 `undefined` value, for encoding. It decodes to None, like null."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


# -- decoding ---------------------------------------------------------------------------------


def decode_all(data: bytes) -> list:
    """Every value in `data`, which must end exactly after the last one."""
    values = []
    offset = 0
    end = len(data)
    while offset < end:
        value, offset = decode(data, offset)
        values.append(value)
    return values


def decode(data: bytes, offset: int = 0) -> tuple[object, int]:
    """The value that starts at `offset`, and the offset just after it."""
    return _Reader(data).value(offset, 0)


class _Reader:
    __slots__ = ("data", "end")

    def __init__(self, data: bytes):
        self.data = data
        self.end = len(data)

    def _need(self, offset: int, size: int, what: str) -> None:
        if offset + size > self.end:
            raise Amf0Error(f"{what} at byte {offset} needs {size} bytes, {max(self.end - offset, 0)} left")

    def _text(self, offset: int, size: int, what: str) -> str:
        self._need(offset, size, what)
        try:
            return bytes(self.data[offset:offset + size]).decode("utf-8")
        except UnicodeDecodeError as error:
            raise Amf0Error(f"{what} at byte {offset} is not UTF-8 ({error.reason})") from None

    def _short_string(self, offset: int, what: str) -> tuple[str, int]:
        self._need(offset, 2, f"length of {what}")
        (size,) = _U16.unpack_from(self.data, offset)
        return self._text(offset + 2, size, what), offset + 2 + size

    def _long_string(self, offset: int, what: str) -> tuple[str, int]:
        self._need(offset, 4, f"length of {what}")
        (size,) = _U32.unpack_from(self.data, offset)
        return self._text(offset + 4, size, what), offset + 4 + size

    def value(self, offset: int, depth: int) -> tuple[object, int]:
        if offset >= self.end:
            raise Amf0Error(f"a value was expected at byte {offset}, but the data ends there")
        marker = self.data[offset]
        at = offset
        offset += 1
        if marker == NUMBER:
            self._need(offset, 8, "number")
            return _DOUBLE.unpack_from(self.data, offset)[0], offset + 8
        if marker == BOOLEAN:
            self._need(offset, 1, "boolean")
            return self.data[offset] != 0, offset + 1
        if marker == STRING:
            return self._short_string(offset, "string")
        if marker == NULL or marker == UNDEFINED_MARKER or marker == UNSUPPORTED:
            return None, offset
        if marker == LONG_STRING:
            return self._long_string(offset, "long string")
        if marker == XML_DOCUMENT:
            return self._long_string(offset, "XML document")
        if marker == DATE:
            self._need(offset, 10, "date")
            milliseconds, _timezone = _DATE.unpack_from(self.data, offset)  # timezone: reserved, 0
            return _date(milliseconds), offset + 10
        if marker in (OBJECT, ECMA_ARRAY, STRICT_ARRAY, TYPED_OBJECT):
            if depth >= MAX_DEPTH:
                raise Amf0Error(f"values nested more than {MAX_DEPTH} deep at byte {at}")
            if marker == OBJECT:
                return self._properties(offset, depth + 1, {}, at, lenient_end=False)
            if marker == ECMA_ARRAY:
                self._need(offset, 4, "ECMA array count")
                # The count is only a hint (encoders get it wrong); the end marker ends the array.
                return self._properties(offset + 4, depth + 1, EcmaArray(), at, lenient_end=True)
            if marker == TYPED_OBJECT:
                _class_name, offset = self._short_string(offset, "typed object class name")
                return self._properties(offset, depth + 1, {}, at, lenient_end=False)
            self._need(offset, 4, "strict array count")
            (count,) = _U32.unpack_from(self.data, offset)
            offset += 4
            if count > self.end - offset:  # every value takes at least one byte
                raise Amf0Error(f"strict array at byte {at} claims {count} values in {self.end - offset} bytes")
            items = []
            for _ in range(count):
                item, offset = self.value(offset, depth + 1)
                items.append(item)
            return items, offset
        if marker == OBJECT_END:
            raise Amf0Error(f"object end marker outside an object at byte {at}")
        if marker == REFERENCE:
            raise Amf0Error(f"AMF0 references are not supported (byte {at})")
        if marker == AVMPLUS:
            raise Amf0Error(f"AMF3 values are not supported (switch to AMF3 at byte {at})")
        if marker in (MOVIECLIP, RECORDSET):
            raise Amf0Error(f"reserved AMF0 type {marker:#04x} at byte {at}")
        raise Amf0Error(f"unknown AMF0 type marker {marker:#04x} at byte {at}")

    def _properties(self, offset: int, depth: int, into: dict, at: int, lenient_end: bool) -> tuple[dict, int]:
        """Name/value pairs up to the empty name and object end marker."""
        data = self.data
        while True:
            if lenient_end and offset == self.end:
                # Some encoders leave the end marker off an ECMA array that ends the message.
                return into, offset
            key, offset = self._short_string(offset, "property name")
            if not key and offset < self.end and data[offset] == OBJECT_END:
                return into, offset + 1
            if offset >= self.end:
                raise Amf0Error(f"object at byte {at} is not terminated (no object end marker)")
            into[key], offset = self.value(offset, depth)


def _date(milliseconds: float) -> datetime | float:
    if not math.isfinite(milliseconds):
        return milliseconds
    try:
        return _EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError:
        return milliseconds


# -- encoding ---------------------------------------------------------------------------------


def encode(*values) -> bytes:
    """The AMF0 bytes of `values`, one after the other.

    None is null, UNDEFINED is undefined, bool is boolean, int and float are numbers, str is a
    string (a long string above 65535 bytes of UTF-8), dict is an object, EcmaArray an ECMA
    array, list and tuple are strict arrays, datetime is a date (naive ones are taken as UTC).
    """
    out = bytearray()
    for value in values:
        _encode(out, value, 0)
    return bytes(out)


def _encode(out: bytearray, value, depth: int) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        elif len(raw) <= 0xFFFFFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            raise Amf0Error("a string longer than 4 GiB cannot be encoded")
        out += raw
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        out.append(DATE)
        out += _DATE.pack((value - _EPOCH) / timedelta(milliseconds=1), 0)
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise Amf0Error(f"values nested more than {MAX_DEPTH} deep")
        if isinstance(value, EcmaArray):
            out.append(ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(OBJECT)
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"AMF0 property names are strings, not {type(key).__name__}")
            raw = key.encode("utf-8")
            if len(raw) > 0xFFFF:
                raise Amf0Error("a property name longer than 65535 bytes cannot be encoded")
            if not raw:
                raise Amf0Error("an empty property name cannot be encoded (it would end the object)")
            out += _U16.pack(len(raw))
            out += raw
            _encode(out, item, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise Amf0Error(f"values nested more than {MAX_DEPTH} deep")
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(out, item, depth + 1)
    else:
        raise TypeError(f"{type(value).__name__} has no AMF0 encoding")

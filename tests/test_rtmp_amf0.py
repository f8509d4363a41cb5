"""AMF0: byte vectors typed from the AMF0 specification, round trips, and malformed input."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.rtmp import amf0
from recorder.rtmp.amf0 import UNDEFINED, Amf0Error, EcmaArray, decode, decode_all, encode

# Each value with its bytes, typed by hand from the markers and layouts of the specification.
VECTORS = [
    (0.0, "00 0000000000000000"),
    (1.0, "00 3ff0000000000000"),
    (-2.5, "00 c004000000000000"),
    (320.0, "00 4074000000000000"),
    (True, "01 01"),
    (False, "01 00"),
    ("", "02 0000"),
    ("connect", "02 0007 636f6e6e656374"),
    ("é", "02 0002 c3a9"),
    (None, "05"),
    ({}, "03 0000 09"),
    ({"app": "live"}, "03 0003 617070 02 0004 6c697665 0000 09"),
    ({"a": {"b": None}}, "03 0001 61 03 0001 62 05 0000 09 0000 09"),
    (EcmaArray({"width": 320.0}), "08 00000001 0005 7769647468 00 4074000000000000 0000 09"),
    (EcmaArray(), "08 00000000 0000 09"),
    ([], "0a 00000000"),
    ([1.0, "a"], "0a 00000002 00 3ff0000000000000 02 0001 61"),
    (datetime(1970, 1, 1, tzinfo=UTC), "0b 0000000000000000 0000"),
    # 2001-09-09T01:46:40Z is 10**12 ms after the epoch.
    (datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC), "0b 426d1a94a2000000 0000"),
]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(("value", "encoded"), VECTORS, ids=[repr(v)[:30] for v, _ in VECTORS])
def test_vectors_decode_and_encode(value, encoded):
    data = _hex(encoded)
    assert decode_all(data) == [value]
    assert encode(value) == data
    decoded, end = decode(data + b"\x05", 0)
    assert decoded == value and end == len(data)


def test_decoded_types():
    number, string, obj, ecma, array, date = decode_all(encode(3, "s", {"k": 1}, EcmaArray(k=1), [1], datetime(2020, 1, 1)))
    assert type(number) is float and number == 3.0
    assert type(string) is str
    assert type(obj) is dict
    assert isinstance(ecma, dict) and type(ecma) is EcmaArray
    assert type(array) is list
    assert date == datetime(2020, 1, 1, tzinfo=UTC)  # naive datetimes are taken as UTC


def test_markers_without_an_encoder_of_their_own():
    assert decode_all(_hex("06")) == [None]  # undefined
    assert encode(UNDEFINED) == _hex("06")
    assert decode_all(_hex("0d")) == [None]  # unsupported
    assert decode_all(_hex("0c 00000003 616263")) == ["abc"]  # long string
    assert decode_all(_hex("0f 00000004 3c612f3e")) == ["<a/>"]  # XML document
    # Typed object: class name "Foo", one property; decodes to a dict without the class.
    assert decode_all(_hex("10 0003 466f6f 0001 61 05 0000 09")) == [{"a": None}]


def test_long_strings_switch_marker_above_65535_bytes():
    short, long = "x" * 0xFFFF, "y" * 0x10000
    assert encode(short)[:3] == _hex("02 ffff")
    assert encode(long)[:5] == _hex("0c 00010000")
    assert decode_all(encode(short, long)) == [short, long]


def test_dates_outside_datetime_and_not_finite_stay_milliseconds():
    assert decode_all(_hex("0b 7ff0000000000000 0000")) == [math.inf]  # +infinity
    huge = 1e300
    assert decode_all(b"\x0b" + amf0._DOUBLE.pack(huge) + b"\x00\x00") == [huge]
    (nan,) = decode_all(b"\x0b" + amf0._DOUBLE.pack(math.nan) + b"\x00\x00")
    assert math.isnan(nan)


def test_ecma_array_without_its_end_marker_at_the_end_of_the_data():
    # Some encoders leave the end marker off an onMetaData array that ends the message.
    data = _hex("02 000a 6f6e4d65746144617461 08 00000001 0005 7769647468 00 4074000000000000")
    assert decode_all(data) == ["onMetaData", {"width": 320.0}]


def test_an_empty_property_name_that_does_not_end_the_object():
    assert decode_all(_hex("03 0000 05 0001 61 01 01 0000 09")) == [{"": None, "a": True}]


def test_a_real_connect_command():
    # What ffmpeg sends: "connect", transaction 1, and the command object.
    data = encode("connect", 1.0, {"app": "live", "type": "nonprivate", "flashVer": "FMLE/3.0",
                                   "tcUrl": "rtmp://127.0.0.1:1935/live"})
    name, transaction, properties = decode_all(data)
    assert (name, transaction, properties["app"], properties["tcUrl"]) == (
        "connect", 1.0, "live", "rtmp://127.0.0.1:1935/live")
    assert list(properties) == ["app", "type", "flashVer", "tcUrl"]  # order kept


MALFORMED = {
    "empty at a value": ("", "decode"),
    "truncated number": ("00 3ff0", "number"),
    "boolean without its byte": ("01", "boolean"),
    "truncated string length": ("02 00", "length of string"),
    "truncated string": ("02 0005 6162", "string"),
    "not UTF-8": ("02 0002 fffe", "not UTF-8"),
    "truncated long string": ("0c 00000010 61", "long string"),
    "unterminated object": ("03 0001 61 05", "property name"),
    "object key without value": ("03 0001 61", "not terminated"),
    "truncated ECMA array count": ("08 0000", "ECMA array count"),
    "truncated date": ("0b 0000", "date"),
    "object end outside an object": ("09", "object end"),
    "reference": ("07 0001", "references are not supported"),
    "switch to AMF3": ("11 02", "AMF3"),
    "movie clip": ("04", "reserved"),
    "record set": ("0e", "reserved"),
    "unknown marker": ("12", "unknown AMF0 type marker 0x12"),
    "strict array count beyond the data": ("0a ffffffff 05", "claims 4294967295 values"),
    "strict array missing values": ("0a 00000002 00 3ff0000000000000", "the data ends"),
    "typed object without class name": ("10 00", "typed object class name"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_raises_amf0_error(name):
    data, message = MALFORMED[name]
    with pytest.raises(Amf0Error) as caught:
        if name == "empty at a value":
            decode(b"", 0)
        else:
            decode_all(_hex(data))
    if name != "empty at a value":
        assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_nesting_is_bounded():
    deep = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 1) + b"\x05"
    with pytest.raises(Amf0Error, match="nested more than"):
        decode_all(deep)
    ok = b"\x0a\x00\x00\x00\x01" * amf0.MAX_DEPTH + b"\x05"
    assert decode_all(ok)
    objects = b"\x03\x00\x01a" * (amf0.MAX_DEPTH + 1)
    with pytest.raises(Amf0Error, match="nested more than"):
        decode_all(objects)
    value: list = []
    for _ in range(amf0.MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(Amf0Error, match="nested more than"):
        encode(value)


def test_values_that_cannot_be_encoded():
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(TypeError):
        encode({1: "x"})
    with pytest.raises(Amf0Error):
        encode({"": 1})


# -- round trips --------------------------------------------------------------------------------

_dates = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))  # AMF0 dates are milliseconds
_scalars = (st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=40) | _dates)
_keys = st.text(min_size=1, max_size=12)
_values = st.recursive(
    _scalars,
    lambda children: (st.lists(children, max_size=5)
                      | st.dictionaries(_keys, children, max_size=5)
                      | st.dictionaries(_keys, children, max_size=5).map(EcmaArray)),
    max_leaves=30,
)
_values_without_ecma_arrays = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


@given(st.lists(_values, max_size=6))
def test_round_trip(values):
    assert decode_all(encode(*values)) == values


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integers_encode_as_numbers(number):
    assert decode_all(encode(number)) == [float(number)]


@given(st.binary(max_size=200))
def test_garbage_raises_only_amf0_error(data):
    try:
        decode_all(data)
    except Amf0Error:
        pass


@given(st.lists(_values_without_ecma_arrays, min_size=1, max_size=4))
def test_truncations_raise_amf0_error_unless_cut_between_values(values):
    encoded = encode(*values)
    ends = list(itertools.accumulate(len(encode(v)) for v in values))
    before = {0: [], **{end: values[:n] for n, end in enumerate(ends, 1)}}  # what data cut there holds
    for cut in range(len(encoded)):
        if cut in before:
            assert decode_all(encoded[:cut]) == before[cut]
        else:
            with pytest.raises(Amf0Error):
                decode_all(encoded[:cut])


@given(st.dictionaries(_keys, _values_without_ecma_arrays, max_size=5))
def test_an_ecma_array_cut_between_properties_holds_the_properties_before_the_cut(properties):
    # An ECMA array that ends the data needs no end marker (see above): cut after a property, it
    # is the properties so far; cut anywhere else, it is an error.
    encoded = encode(EcmaArray(properties))
    end = 5  # marker and count
    before = {0: [], end: [EcmaArray()]}
    for n, (key, value) in enumerate(properties.items(), 1):
        end += 2 + len(key.encode()) + len(encode(value))
        before[end] = [EcmaArray(list(properties.items())[:n])]
    assert encoded[end:] == b"\x00\x00\x09"
    for cut in range(len(encoded)):
        if cut in before:
            assert decode_all(encoded[:cut]) == before[cut]
            assert all(type(v) is EcmaArray for v in decode_all(encoded[:cut]))
        else:
            with pytest.raises(Amf0Error):
                decode_all(encoded[:cut])

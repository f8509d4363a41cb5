"""Device serial numbers, session ids and firmware builds.

Serials look like the vendor's (e.g. 1M0YDB6H7Y0110): "1M0YD", a letter, a digit, "H", two
letters or digits and four digits. A fleet's serials increase with the device index, so device 0
has the smallest (the vendor SDK makes the smallest serial the time-domain-mapping broadcaster),
and device i's serial depends on the seed and i only, not on the size of the fleet.
"""

from __future__ import annotations

import string
import uuid

from . import noise

BUILD = "51048810021100500"
PREFIX = "1M0YD"
# The variable part, one alphabet per character; each alphabet is in ASCII order, so counting in
# this mixed radix counts in lexicographic order.
_ALPHABETS = (string.ascii_uppercase, string.digits, "H", string.digits + string.ascii_uppercase,
              string.digits + string.ascii_uppercase, *[string.digits] * 4)
_CAPACITY = 1
for _alphabet in _ALPHABETS:
    _CAPACITY *= len(_alphabet)
MAX_STEP = 1 << 18  # serials of consecutive devices are at most this far apart
MAX_DEVICES = (_CAPACITY * 9 // 10) // MAX_STEP


def _spell(number: int) -> str:
    chars = []
    for alphabet in reversed(_ALPHABETS):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return PREFIX + "".join(reversed(chars))


def serials(seed: int, devices: int) -> list[str]:
    if devices > MAX_DEVICES:
        raise ValueError(f"at most {MAX_DEVICES} simulated devices have distinct serials, not {devices}")
    number = int(noise.rng(seed, "serials").integers(0, _CAPACITY // 10))
    out = []
    for index in range(devices):
        if index:
            number += int(noise.rng(seed, index, "serial").integers(1, MAX_STEP + 1))
        out.append(_spell(number))
    return out


def session_id(seed: int, index: int) -> str:
    return str(uuid.UUID(bytes=noise.rng(seed, index, "session").bytes(16), version=4))

"""Deterministic noise addressed by (key, sample index).

A value depends only on its key and index, never on what was drawn before it, so a device's
bytes are the same however a run is cut into windows (a real-time sender cuts where the wall
clock says). The generator is splitmix64, which is counter-based and cheap to vectorise.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def key(*parts) -> int:
    """A 64-bit key from any printable parts (seed, device index, purpose, ...); stable across runs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng(*parts) -> np.random.Generator:
    """A sequential generator for one-time choices (a device's parameters), keyed like key()."""
    return np.random.default_rng(key(*parts))


def _bits(stream_key: int, counters: np.ndarray) -> np.ndarray:
    x = np.uint64(stream_key) + (counters.astype(np.uint64) + np.uint64(1)) * _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _counters(index, width: int) -> np.ndarray:
    index = np.asarray(index, np.int64)
    return index[:, None] * width + np.arange(width)


def uniform(stream_key: int, index, width: int = 1) -> np.ndarray:
    """Uniform [0, 1) values, shape (len(index), width)."""
    return (_bits(stream_key, _counters(index, width)) >> np.uint64(11)) * (1.0 / (1 << 53))


def gaussian(stream_key: int, index, width: int = 1) -> np.ndarray:
    """Standard normal values, shape (len(index), width) (Box-Muller on two uniforms)."""
    counters = _counters(index, width) * 2
    u1 = (_bits(stream_key, counters) >> np.uint64(11)) * (1.0 / (1 << 53))
    u2 = (_bits(stream_key, counters + 1) >> np.uint64(11)) * (1.0 / (1 << 53))
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)

"""Microphone audio: a short tune, repeated, heard by every microphone a little apart.

A device plays an arpeggio of eight notes, a quarter second each, transposed per device so that
devices can be told apart by ear. Each microphone hears it slightly later and louder or softer
than the first, as microphones a few centimetres apart would, over a faint noise floor. Sample
n is a function of n alone, so blocks can be cut anywhere.
"""

from __future__ import annotations

import numpy as np

from . import noise

NOTE_S = 0.25
TUNE_SEMITONES = np.array([0, 4, 7, 12, 16, 12, 7, 4])
HARMONICS = np.array([1.0, 0.5, 0.25])  # a little brighter than a sine
FULL_SCALE = 32767


class Tune:
    def __init__(self, seed: int, index: int, rate_hz: int, channels: int):
        rng = noise.rng(seed, index, "audio")
        self.rate_hz = rate_hz
        self.channels = channels
        self.base_hz = 220.0 * 2 ** ((index % 12) / 12)
        self.delays = np.concatenate([[0], rng.integers(1, 8, channels - 1)])  # samples after mic 0
        self.gains = np.concatenate([[1.0], rng.uniform(0.7, 1.0, channels - 1)])
        self._key = noise.key(seed, index, "audio", "floor")

    def pcm_s16(self, first: int, count: int) -> np.ndarray:
        """Samples first .. first + count - 1 as int16, shape (count, channels) (interleaved)."""
        lead = int(self.delays.max())
        heard = self._tune(np.arange(first - lead, first + count, dtype=np.int64))
        # Microphone c hears the tune delays[c] samples late: a shifted view of the same samples.
        rows = lead - self.delays + np.arange(count)[:, None]
        floor = noise.uniform(self._key, np.arange(first, first + count), self.channels) - 0.5
        signal = heard[rows] * self.gains + 0.004 * floor
        return np.rint(signal * FULL_SCALE).astype(np.int16)

    def _tune(self, n: np.ndarray) -> np.ndarray:
        t = n / self.rate_hz
        note = np.floor(t / NOTE_S).astype(np.int64)
        into = t - note * NOTE_S
        frequency = self.base_hz * 2 ** (TUNE_SEMITONES[note % len(TUNE_SEMITONES)] / 12)
        tone = np.sin(2 * np.pi * np.multiply.outer(frequency * into, np.arange(1, len(HARMONICS) + 1))) @ HARMONICS
        # Struck, then decaying, and silent again by the next note: no clicks between notes.
        envelope = (1 - np.exp(-into / 0.005)) * np.exp(-into / 0.08) * (1 - (into / NOTE_S) ** 8)
        return 0.3 * envelope * tone / HARMONICS.sum()

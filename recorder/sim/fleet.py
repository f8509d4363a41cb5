"""Simulated devices: who they are, and the body fragment each sends for a span of run time.

A fleet shares a seed: one place (air pressure, magnetic field, the world the cameras see) and
one RGB loop per profile; each device has its own serial, session, clock, walk, gaze, hands and
sensor errors, all derived from (seed, device index).
"""

from __future__ import annotations

import zlib

import numpy as np

from ..schema import Schema, load
from ..wire.encoder import RecordRows, blob_payload, interleave, record, sample_records, single_record
from . import calibration, identity
from .audio import Tune
from .batching import capture_ns, span
from .cameras import Cameras
from .clock import DeviceClock
from .profiles import PROFILES, TDM, Profile
from .sensors import Signals

AUDIO_BLOCK_ONE_SAMPLE_NS = 10_000_000  # audio's "one sample per message": 10 ms blocks


class SimulatedDevice:
    """One pair of glasses streaming one session.

    serial, session_id, build: who it is (the request headers); session_id is derived from
    (seed, index) unless given. is_broadcaster: the fleet's time-domain-mapping broadcaster,
    which reports no TIME_DOMAIN_MAPPING_EVENT. records_sent,
    bytes_sent: running totals of what window() has given out. signals, cameras, tune: the
    models behind the bytes (tests compare decoded values with them).
    """

    def __init__(self, *, seed: int, index: int, serial: str, profile: Profile, clock: DeviceClock,
                 broadcaster_clock: DeviceClock | None, broadcaster_id: int, batch_period_ms: int,
                 one_sample_per_message: bool, session_id: str | None = None, schema: Schema | None = None):
        self.schema = schema or load()
        self.serial = serial
        self.session_id = session_id or identity.session_id(seed, index)
        self.build = identity.BUILD
        self.is_broadcaster = broadcaster_clock is None
        self.profile = profile
        self.clock = clock
        self.records_sent = 0
        self.bytes_sent = 0
        self.signals = Signals(seed, index, clock, broadcaster=broadcaster_clock, broadcaster_id=broadcaster_id,
                               schema=self.schema)
        self.cameras = Cameras(seed, self.schema, self.signals.walk, self.signals.gaze,
                               phase=float(self.signals.phases[0]))
        self.tune = Tune(seed, index, profile.audio.rate_hz, profile.audio.channels) if profile.audio else None
        self.sample_streams = tuple(s for s in profile.samples if not (self.is_broadcaster and s == TDM))
        period_ns = batch_period_ms * 1_000_000
        self._record_period_ns = None if one_sample_per_message else period_ns
        self._audio_block_ns = AUDIO_BLOCK_ONE_SAMPLE_NS if one_sample_per_message else period_ns
        self._seed, self._index = seed, index
        self._calibration_header: str | None = None

    def __repr__(self) -> str:
        return f"SimulatedDevice({self.serial}, {self.profile.name}{', broadcaster' if self.is_broadcaster else ''})"

    def headers(self) -> dict[str, str]:
        if self._calibration_header is None:  # tens of kB: only built when asked for
            self._calibration_header = calibration.header_value(calibration.calibration(
                self.profile, seed=self._seed, index=self._index, serial=self.serial, build=self.build,
                accel_bias=self.signals.accel_bias, gyro_bias=self.signals.gyro_bias,
                hard_iron_t=self.signals.hard_iron))
        return {"session-id": self.session_id, "device-serial": self.serial, "device-build": self.build,
                "oatmeal-calibration": self._calibration_header}

    def clock_ns(self, t_s: float) -> int:
        return self.clock.clock_ns(t_s)

    def window(self, t0_s: float, t1_s: float) -> bytes:
        """All records whose capture time falls in run-time [t0_s, t1_s) (seconds since the run's start),
        as one body fragment, sequences continuing from the previous window (first record of the session is 0).

        A record's capture time is its first sample's, so a batch that starts in the window is
        sent whole. Consecutive windows give the same bytes however the run is cut into them."""
        if not 0 <= t0_s <= t1_s:
            raise ValueError(f"a window runs forward from run time 0, not [{t0_s}, {t1_s})")
        t0_ns, t1_ns = round(t0_s * 1e9), round(t1_s * 1e9)
        rows = self._sample_records(t0_ns, t1_ns) + self._camera_records(t0_ns, t1_ns) + self._audio_records(t0_ns, t1_ns)
        body, count = interleave(rows, self.records_sent)
        self.records_sent += count
        self.bytes_sent += len(body)
        return body

    def _sample_records(self, t0_ns: int, t1_ns: int) -> list[RecordRows]:
        rows = []
        for stream in self.sample_streams:
            part = span(stream.rate_hz, self._record_period_ns, t0_ns, t1_ns)
            if not len(part.counts):
                continue
            samples = self.signals.samples(stream, part.indices)
            spec = self.schema.message(stream.message)
            for count, mask in part.by_count():
                rows += sample_records(spec, stream.source, samples[mask], per_record=count)
        return rows

    def _blob(self, message: str, prefix: dict, data: bytes, timestamp_ns: int) -> RecordRows:
        spec = self.schema.message(message)
        return single_record(record(spec.id, blob_payload(spec, prefix, data), sequence=0, timestamp_ns=timestamp_ns),
                             timestamp_ns)

    def _camera_records(self, t0_ns: int, t1_ns: int) -> list[RecordRows]:
        rows = []
        for camera in self.profile.cameras:
            numbers = span(camera.rate_hz, None, t0_ns, t1_ns).indices
            run_ns = capture_ns(numbers, camera.rate_hz)
            frames = self.cameras.frames(camera, numbers, run_ns * 1e-9)
            rows += [self._blob(camera.message, prefix, image, int(ts))
                     for (prefix, image), ts in zip(frames, self.clock.at_ns(run_ns), strict=True)]
        return rows

    def _audio_records(self, t0_ns: int, t1_ns: int) -> list[RecordRows]:
        if self.tune is None:
            return []
        audio = self.profile.audio
        part = span(audio.rate_hz, self._audio_block_ns, t0_ns, t1_ns)
        if not len(part.counts):
            return []
        pcm = self.tune.pcm_s16(part.first, int(part.counts.sum()))
        starts = np.concatenate([[0], np.cumsum(part.counts)[:-1]])
        timestamps = self.clock.at_ns(capture_ns(part.first + starts, audio.rate_hz))
        pcm_s16le = self.schema.enums["audio_codec"].code("PCM_S16LE")
        return [self._blob("AUDIO_REC_DATA", {"channels": audio.channels, "codec": pcm_s16le,
                                              "sample_rate_hz": audio.rate_hz, "samples_per_channel": int(count)},
                           pcm[start:start + count].tobytes(), int(ts))
                for start, count, ts in zip(starts, part.counts, timestamps, strict=True)]


def make_fleet(devices: int, *, seed: int = 0, profile: str = "profile9", batch_period_ms: int = 200,
               one_sample_per_message: bool = False, session_ids: list[str] | None = None,
               schema: Schema | None = None) -> list[SimulatedDevice]:
    """Devices 0 .. devices - 1. Device 0 has the smallest serial and is the time-domain-mapping
    broadcaster (the vendor SDK picks the smallest serial); the others report TDM against it.

    The seed fixes serials and data. Session ids are derived from the seed too unless
    session_ids gives one per device: a twin fleet made with the same arguments is the same
    sessions, which tests rely on; a command that sends a new run passes fresh ones, or a
    recorder takes the run for a reconnect of the earlier one and stores nothing new.
    schema: the layouts and enum codes to send by (default: schemas/messages.toml)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if devices < 1 or batch_period_ms < 1:
        raise ValueError("a fleet needs at least one device and a batch period of at least 1 ms")
    if session_ids is not None and len(session_ids) != devices:
        raise ValueError(f"{len(session_ids)} session id(s) for {devices} device(s)")
    serials = identity.serials(seed, devices)
    clocks = [DeviceClock.for_device(seed, index) for index in range(devices)]
    broadcaster_id = zlib.crc32(serials[0].encode())
    return [SimulatedDevice(seed=seed, index=index, serial=serials[index], profile=PROFILES[profile],
                            clock=clocks[index], broadcaster_clock=clocks[0] if index else None,
                            broadcaster_id=broadcaster_id, batch_period_ms=batch_period_ms,
                            one_sample_per_message=one_sample_per_message,
                            session_id=session_ids[index] if session_ids else None, schema=schema)
            for index in range(devices)]

"""What /status and /metrics show: a snapshot of every session this server has seen, and of
whatever else the process runs beside it (its status sources)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry


@dataclass(frozen=True)
class StatusSource:
    """Another server in the process: its status() is shown in /status under `name`, its
    metric_families() in /metrics."""

    name: str
    status: Callable[[], dict]
    metric_families: Callable[[], Iterable]


def session_status(s) -> dict:
    stats = s.stats or {}
    rates = s.meter.rates
    return {
        "device": s.serial,
        "session_id": s.session_id,
        "state": s.state,
        "since": s.since,
        "state_since": s.state_since,
        "remote": s.remote,
        "resumed": s.resumed,
        "connections": s.connections,
        "requests": s.requests,
        "bytes": s.counters.bytes + s.raw_bytes,
        "records": s.counters.records,
        "records_per_s": rates.get("records", 0.0),
        "bitrate_mbps": rates.get("bytes", 0.0) * 8 / 1e6,
        "streams": {name: {"count": info["rows"], "rate_hz": rates.get(f"stream:{name}", 0.0),
                           "stored_bytes": info["bytes"]}
                    for name, info in stats.get("streams", {}).items()},
        "camera_fps": {name: rates.get(f"stream:{name}", 0.0) for name in stats.get("camera_frames", {})},
        "gaps": s.counters.gaps,
        "resends": s.counters.resends,
        "corrupt_bytes": s.counters.corrupt_bytes,
        "bad_crc": s.counters.bad_crc,
        "malformed": s.counters.malformed,
        "truncated": s.counters.truncated,
        "opaque": s.counters.opaque,
        "raw_bytes": s.raw_bytes,
        # A body that is not SRF1 version 1 is stored verbatim: none of it is in the figures above.
        "undecoded_body": s.undecoded_body,
        "undecoded_bytes": s.raw_bytes,
        "tdm": stats.get("tdm", {}),
        "path": str(s.writer.path),
    }


def status(recorder) -> dict:
    return {
        "status": "shutting_down" if recorder.shutting_down else "ok",
        "uptime_s": time.time() - recorder.started,
        "sessions": [session_status(s) for s in recorder.sessions.values()],
        # Finished sessions that left the list above (keep_finished_s): how many, what they got.
        "finished_earlier": dict(recorder.forgotten),
        # The overload limits, the connections and bytes in flight against them, refusals per limit.
        "overload": recorder.overload.status(),
        **{source.name: source.status() for source in recorder.status_sources},
    }


class _Collector:
    def __init__(self, recorder):
        self.recorder = recorder

    def collect(self):
        labels = ["device", "session_id"]
        counters = {
            "bytes": "Body bytes received", "records": "Records decoded and stored",
            "gaps": "Records missing between sequences", "resends": "Resent records not stored again",
            "corrupt_bytes": "Bytes skipped while resynchronising", "bad_crc": "Records with a bad CRC",
            "malformed": "Records whose payload does not match its layout",
            "truncated": "Records cut off by the end of a body", "opaque": "Records kept verbatim",
            "undecoded_bytes": "Body bytes not in SRF1 version 1: stored verbatim, not decoded",
        }
        families = {k: CounterMetricFamily(f"recorder_session_{k}", help, labels=labels) for k, help in counters.items()}
        up = GaugeMetricFamily("recorder_session_receiving", "1 while a device is streaming the session", labels=labels)
        rate = GaugeMetricFamily("recorder_session_records_per_second", "Records per second lately", labels=labels)
        bitrate = GaugeMetricFamily("recorder_session_bitrate_mbps", "Received megabits per second lately", labels=labels)
        stream = CounterMetricFamily("recorder_stream_samples", "Samples or frames stored per stream",
                                     labels=[*labels, "stream"])
        tdm = GaugeMetricFamily("recorder_session_tdm_offset_ms", "Mean time-domain-mapping offset", labels=labels)
        for s in list(self.recorder.sessions.values()):
            st = session_status(s)
            key = [s.serial, s.session_id]
            for name, family in families.items():
                family.add_metric(key, st[name])
            up.add_metric(key, 1.0 if s.state == "receiving" else 0.0)
            rate.add_metric(key, st["records_per_s"])
            bitrate.add_metric(key, st["bitrate_mbps"])
            for name, info in st["streams"].items():
                stream.add_metric([*key, name], info["count"])
            if st["tdm"].get("mean_offset_ns") is not None:
                tdm.add_metric(key, st["tdm"]["mean_offset_ns"] / 1e6)
        yield from families.values()
        yield from (up, rate, bitrate, stream, tdm)
        yield GaugeMetricFamily("recorder_sessions", "Sessions known to this server", value=len(self.recorder.sessions))
        yield from overload_families(self.recorder.overload)
        for source in self.recorder.status_sources:
            yield from source.metric_families()


def overload_families(overload):
    refused = CounterMetricFamily("recorder_connections_refused",
                                  "Connections refused past a limit (answered 503, or closed unanswered in a flood)",
                                  labels=["reason"])
    for reason, count in overload.refused.items():
        refused.add_metric([reason], count)
    yield refused
    yield GaugeMetricFamily("recorder_connections_open", "HTTP connections open within the limits",
                            value=overload.open)
    yield GaugeMetricFamily("recorder_memory_in_flight_bytes", "Body bytes received and not yet written",
                            value=overload.memory_in_flight)


def metrics(recorder) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(recorder))
    return generate_latest(registry)

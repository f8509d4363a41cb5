"""The RTMP streams in /status and /metrics."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

STATES = ("initializing", "active", "stopping", "stopped", "error")


def stream_status(s) -> dict:
    stats = s.stats or {}
    return {
        "app": s.app,
        "stream_key": s.stream_key,
        "session_id": s.session_id,
        "state": s.state,
        "since": s.since,
        "state_since": s.state_since,
        "remote": s.remote,
        "recovered": s.recovered,
        "publishes": stats.get("publishes", s.publishes),
        "error": s.error,
        "bytes": stats.get("bytes", 0),
        "duration_s": stats.get("duration_s", 0.0),
        "bitrate_bps": stats.get("bitrate_bps", 0.0),
        "fps": stats.get("fps", 0.0),
        "video_frames": stats.get("video_frames", 0),
        "keyframes": stats.get("keyframes", 0),
        "audio_frames": stats.get("audio_frames", 0),
        "dropped_frames": stats.get("dropped_frames", 0),
        "width": stats.get("width"),
        "height": stats.get("height"),
        "video_codec": stats.get("video_codec"),
        "audio_codec": stats.get("audio_codec"),
        "path": str(s.recording.folder) if s.recording is not None else None,
    }


def status(service) -> dict:
    return {"port": service.config.port, "open_to_all": service.config.policy.open,
            "streams": [stream_status(s) for s in service.all_sessions()]}


def metric_families(service):
    labels = ["app", "stream_key", "session_id"]
    counters = {"bytes": "FLV bytes recorded", "video_frames": "Video frames recorded",
                "audio_frames": "Audio frames recorded", "dropped_frames": "Video frames the publisher dropped "
                "(from timestamp gaps)", "publishes": "Publishes the session was recorded from"}
    families = {k: CounterMetricFamily(f"recorder_rtmp_{k}", help, labels=labels) for k, help in counters.items()}
    gauges = {"bitrate_bps": "Bits per second lately", "fps": "Video frames per second lately",
              "duration_s": "Seconds of stream recorded"}
    gauge_families = {k: GaugeMetricFamily(f"recorder_rtmp_{k}", help, labels=labels) for k, help in gauges.items()}
    state = GaugeMetricFamily("recorder_rtmp_state", "1 for the stream's current state", labels=[*labels, "state"])
    for s in service.all_sessions():
        st = stream_status(s)
        key = [s.app, s.stream_key, st["session_id"] or ""]
        for name, family in (*families.items(), *gauge_families.items()):
            family.add_metric(key, st[name])
        for name in STATES:
            state.add_metric([*key, name], 1.0 if s.state == name else 0.0)
    yield from families.values()
    yield from gauge_families.values()
    yield state

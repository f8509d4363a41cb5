"""One /status and one /metrics out of every worker's own (recorder serve --workers N).

Each worker owns whole sessions, so sessions, devices and subscribers are listed by one worker
each and the merge puts the lists together; counts and the limits of a worker's share add up
to the server's. Done on the figures as the workers serve them: /status as JSON, /metrics in
Prometheus' text format, read back with prometheus_client's own parser.
"""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

# Figures of a worker that are not added up but taken at their largest: how long it has run
# (the server has run as long as its oldest worker), and what a refused device is told.
LARGEST = frozenset({"uptime_s", "retry_after_s"})
# Figures every worker shows alike: the server's limits.
SAME = frozenset({"limits"})


def merge_status(statuses: list[dict]) -> dict:
    merged: dict = {}
    for status in statuses:
        merged = _merge(merged, status)
    merged["status"] = "shutting_down" if any(s.get("status") == "shutting_down" for s in statuses) else "ok"
    return merged


def _merge(a, b, key: str | None = None):
    if key in SAME:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a[k], v, k) if k in a else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, bool) or isinstance(b, bool):
        return a or b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return max(a, b) if key in LARGEST else a + b
    return a if a is not None else b


def merge_metrics(texts: list[bytes]) -> bytes:
    """The workers' /metrics as one: samples of the same name and labels added up."""
    families: dict[str, Metric] = {}
    values: dict[str, dict] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                previous = samples.get(key)
                samples[key] = sample if previous is None else previous._replace(value=previous.value + sample.value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([_with_samples(families[name], list(values[name].values())) for name in families]))
    return generate_latest(registry)


def _with_samples(family: Metric, samples: list) -> Metric:
    family.samples = samples
    return family


class _Families:
    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return self.families

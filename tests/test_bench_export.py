"""The export bench in a short form: every format it finds is measured on a stored capture and
leaves no output behind (no timed assertion: speed is for `make bench`)."""

from __future__ import annotations

from recorder.bench import export as bench


def test_the_export_bench_measures_the_parquet_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = bench.run(seconds=0.5, long_minutes=0.02)
    assert results["formats"]["parquet"]["mb_per_s"] > 0 and results["long"]["parquet"]["stored_mb"] > 0
    mcap = results["formats"]["mcap"]  # each export beside its peer, the library alone
    assert len(mcap["pair_ratios"]) == bench.MCAP_REPEATS and all(r > 0 for r in mcap["pair_ratios"])
    assert mcap["ratio_to_peer"] == mcap["peer_seconds"] / mcap["seconds"]
    assert min(mcap["pair_ratios"]) <= mcap["median_pair_ratio"] <= max(mcap["pair_ratios"])
    assert list(tmp_path.iterdir()) == []  # the bench's folder is gone

"""python -m recorder.bench [SECTION ...]: run the benchmark sections (all by default)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import decoder, export, feed, ingest, overload, peers, replay, rtmp, soak, storage

SECTIONS = {"decoder": decoder.run, "storage": storage.run, "ingest": ingest.run, "rtmp": rtmp.run,
            "replay": replay.run, "feed": feed.section, "export": export.run, "peers": peers.run,
            "soak": soak.run, "overload": overload.run}


def main(argv: list[str]) -> int:
    names = argv or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    results = {}
    for name in names:
        print(f"== {name}")
        results[name] = SECTIONS[name]()
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"(figures saved in {out / 'latest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`recorder serve` with storage settings serve has no option for, for tests/test_power_loss.py:

    python tests/power_loss_server.py [--roll-seconds S] [--no-fsync-in MODULE] serve [serve's options]

--roll-seconds S: each stream's live part is finished into Parquet once it is S s old (the
Store's roll_seconds; serve's 600 s would finish no part within a test's few seconds, and a
power cut should also land while parts are being finished). --no-fsync-in MODULE: every fsync
and fdatasync that module makes (`all`: anywhere in the server) returns at once having done
nothing, a server that answers 200 for what may not be durable: the negative controls, which
the test must catch. serve runs in this one process (--workers 1 unless told otherwise): the
settings made here would not reach worker processes.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import recorder.storage
from recorder.cli import main


def skip_sync(fd: int) -> None:
    """Nothing reaches the disk: the page cache keeps it until writeback, or a power cut."""


class OsWithoutSync:
    """The os module as one module sees it, with its syncs skipped."""

    fsync = fdatasync = staticmethod(skip_sync)

    def __getattr__(self, name: str):
        return getattr(os, name)


def configure(args: list[str]) -> list[str]:
    """Apply the leading options; returns the arguments left for `recorder`."""
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--roll-seconds":
            recorder.storage.Store = functools.partial(recorder.storage.Store, roll_seconds=float(args.pop(0)))
        elif option == "--no-fsync-in":
            module = args.pop(0)
            if module == "all":
                os.fsync = os.fdatasync = skip_sync
            else:
                importlib.import_module(module).os = OsWithoutSync()
        else:
            raise SystemExit(f"unknown option {option}")
    if args[:1] == ["serve"] and "--workers" not in args:
        args += ["--workers", "1"]  # these settings hold in this process only, not in workers it would start
    return args


if __name__ == "__main__":
    main(configure(sys.argv[1:]), prog_name="recorder")

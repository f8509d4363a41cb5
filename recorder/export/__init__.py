"""Dataset export: sessions into the files other tools open (see formats/).

    recorder.export.export(["data"], "parquet", "campaign", clock="broadcaster", start="10", end="20")

One ExportJob (job.py) chooses the sessions, streams, window and clock (clocks.py); one format
module writes one output from what the job reads; run.py puts the output in place only once it
is whole.
"""

from .job import ExportError, ExportJob
from .run import ExportSummary, export

__all__ = ["ExportError", "ExportJob", "ExportSummary", "export"]

"""The version-1 wire format: a sans-IO decoder and an encoder, both derived from schemas/."""

from .decoder import Decoder
from .encoder import Encoder, interleave, record, sample_records
from .events import Batch, Blob, CorruptBytes, Counters, SampleBlock, VerbatimRecord

__all__ = ["Batch", "Blob", "CorruptBytes", "Counters", "Decoder", "Encoder", "SampleBlock",
           "VerbatimRecord", "interleave", "record", "sample_records"]

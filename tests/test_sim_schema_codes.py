"""The simulator takes its enum codes from the schema, as the decoder does: with the codes of
schemas/messages.toml renumbered, a device still sends frames and audio that the decoder of that
schema reads as RAW GRAY8, H264 and PCM_S16LE."""

from __future__ import annotations

import tomllib

from recorder.schema import parse, schema_path
from recorder.sim import make_fleet
from recorder.wire import Decoder


def renumbered_schema():
    """The project's schema with every camera codec, pixel format and audio codec moved to
    another code, so that a code written into the simulator shows up as the wrong label."""
    with open(schema_path(), "rb") as f:
        raw = tomllib.load(f)
    raw["enums"]["camera_codec"] = {"0": "H265", "1": "H264", "2": "JPEG", "3": "RAW"}
    raw["enums"]["pixel_format"] = {"0": "YUV420P", "1": "GRAY8", "2": "RGB24"}
    raw["enums"]["audio_codec"] = {"0": "OPUS", "1": "PCM_S32LE", "2": "PCM_S16LE"}
    return parse(raw)


def test_frames_and_audio_carry_the_codes_of_the_schema_they_are_sent_by():
    schema = renumbered_schema()
    device = make_fleet(1, seed=4, profile="profile9", schema=schema)[0]
    decoder = Decoder(schema)
    blobs = decoder.feed(device.window(0.0, 0.2)).blobs + decoder.close().blobs
    assert decoder.counters.malformed == 0

    codecs, pixel_formats = schema.enums["camera_codec"], schema.enums["pixel_format"]
    frames = {b.label: b.prefix for b in blobs if b.message.name in ("SLAM_CAMERA_FRAME", "POV_CAMERA_FRAME")}
    slam = frames["slam-front-left"]
    assert (codecs.label(slam["codec"]), pixel_formats.label(slam["pixel_format"])) == ("RAW", "GRAY8")
    assert codecs.label(frames["camera-rgb"]["codec"]) == "H264"
    audio = [b.prefix for b in blobs if b.message.name == "AUDIO_REC_DATA"]
    assert audio and {schema.enums["audio_codec"].label(p["codec"]) for p in audio} == {"PCM_S16LE"}

"""Camera streams as MP4 and audio as WAV, one file per stream per device:

    <out>/<serial>/<camera>.mp4   with <camera>.mp4.json
    <out>/<serial>/mic.wav        with mic.wav.json

Coded frames are copied, never re-encoded: H.264 and H.265 access units (Annex B as stored; the
MP4 muxer rewrites them into the length-prefixed form MP4 holds and takes the parameter sets
from the first keyframe) and JPEG frames (a Motion JPEG track: every frame byte-identical, which
FFmpeg, VLC and PyAV play and browsers do not). RAW frames are encoded with libx264: yuv420p at
crf 18 (what every player opens), or with `lossless=True` exactly (qp 0): GRAY8 as a gray
(4:0:0) track, RGB24 through libx264rgb, YUV420P as stored; lossless tracks are for analysis,
most hardware players refuse their profiles.

Every frame's presentation time is its `time_ns` on the export clock, in microseconds from the
file's first frame (MP4 players expect times from 0): the sidecar JSON says which export-clock
time pts 0 is, and how many frames the file holds. Frames are in capture order and carry no
B-frames (the glasses' low-latency streams have none; the RAW encoding uses none), so each
frame's DTS is its PTS. A coded file starts at a keyframe whose parameter sets (SPS/PPS, and VPS
for H.265) are in it or in a frame before it in the window (then they are put in front of the
first frame, the one frame not byte-identical): frames before cannot be decoded and are left
out (the sidecar counts them).

A stream whose frames change codec, pixel format or size midway is cut there: each run becomes
its own file (camera-rgb.mp4, camera-rgb-2.mp4, ...), as are the streams of a device's later
sessions (in the order they arrived). Audio: PCM S16LE/S32LE blocks back to back in a WAV
(channels and rate as stored; missing blocks are not filled in: the sidecar counts the gaps),
a new file (mic-2.wav, ...) where they change or where a WAV's 4 GiB would be passed; OPUS is
left out with a note.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ...increasing_dts import IncreasingDts
from ...reading import images
from ...schema import load
from ...wire.rules import PCM_BYTES_PER_SAMPLE
from ..job import ExportError, ExportJob
from ..parallel import by_device

NAME = "mp4"
SUFFIX = ""

TIME_BASE = Fraction(1, 1_000_000)  # pts in microseconds: finer than any camera's timing
NS_PER_TICK = 1000
CRF = "18"
PRESET = "veryfast"
COLORSPACE_BT601 = 6  # AVCOL_SPC_SMPTE170M
RANGE_LIMITED, RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG
CAMERA_COLUMNS = ["codec", "pixel_format", "width", "height", "stride_bytes", "frame_number"]
AUDIO_COLUMNS = ["codec", "channels", "sample_rate_hz", "samples_per_channel"]
COPIED = {images.H264: "h264", images.H265: "hevc", images.JPEG: "mjpeg"}
CODEC_NAMES = {images.RAW: "RAW", images.JPEG: "JPEG", images.H264: "H264", images.H265: "H265"}
PIXEL_FORMAT_NAMES = {images.GRAY8: "GRAY8", images.RGB24: "RGB24", images.YUV420P: "YUV420P"}
PCM_BYTES = PCM_BYTES_PER_SAMPLE  # audio codec -> bytes per sample (PCM only)
AUDIO_CODECS = load().enums["audio_codec"]
# A WAV's sizes are 32-bit: longer audio goes on in the next file (8 channels of S32LE at 48 kHz
# fill one in 45 minutes).
WAV_MAX_BYTES = 2**32 - 2**20


def is_camera(session, stream: str) -> bool:
    return {"codec", "pixel_format", "width", "height", "file"} <= set(session.schema(stream).names)


def is_audio(session, stream: str) -> bool:
    return {"codec", "channels", "sample_rate_hz", "file"} <= set(session.schema(stream).names)


class FileNames:
    """`<stream>.<ext>`, then `<stream>-2.<ext>`, ... for later runs of the same device's stream."""

    def __init__(self):
        self._used: dict[tuple[str, str], int] = {}

    def next(self, folder: Path, stream: str, ext: str) -> Path:
        n = self._used.get((str(folder), stream), 0) + 1
        self._used[(str(folder), stream)] = n
        return folder / (f"{stream}.{ext}" if n == 1 else f"{stream}-{n}.{ext}")


def write(job: ExportJob, out: Path, progress, lossless: bool = False) -> dict:
    rows: dict[str, int] = {}
    files: list[str] = []
    for written in by_device(job, write_device, out, progress, lossless=lossless):
        for stream, count in written["rows"].items():
            rows[stream] = rows.get(stream, 0) + count
        files += written["files"]
    out.mkdir(parents=True, exist_ok=True)
    return {"rows": rows, "files": files}


def write_device(job: ExportJob, out: Path, progress, lossless: bool = False) -> dict:
    """The files of the job's sessions (one device's, when run per device)."""
    rows: dict[str, int] = {}
    files: list[str] = []
    names = FileNames()
    left_out: set[str] = set()
    # A device's later sessions get the later file names; arrival order holds across a reboot,
    # when the device's clock starts again.
    for session in sorted(job.sessions, key=lambda s: (s.serial, s.manifest.get("first_wall_time_ns") or 0)):
        folder = out / session.serial
        for stream in job.streams(session):
            if is_camera(session, stream):
                written = _write_camera(job, session, stream, folder, names, lossless, progress)
            elif is_audio(session, stream):
                written = _write_audio(job, session, stream, folder, names, progress)
            else:
                left_out.add(stream)
                # The progress bar counts every stream's rows: these are done with.
                progress(int(((session.manifest.get("streams") or {}).get(stream) or {}).get("rows") or 0))
                continue
            for path, count in written:
                files.append(str(path.relative_to(out)))
                rows[stream] = rows.get(stream, 0) + count
    if left_out:
        job.notes.append(f"mp4 holds cameras and audio; not exported: {', '.join(sorted(left_out))}")
    out.mkdir(parents=True, exist_ok=True)
    return {"rows": rows, "files": files}


# -- cameras -------------------------------------------------------------------------------------

def _write_camera(job, session, stream, folder, names, lossless, progress) -> list[tuple[Path, int]]:
    written: list[tuple[Path, int]] = []
    video: VideoFile | None = None
    config = None
    start = CodedStart(None)
    try:
        for table in job.rows(session, stream, columns=CAMERA_COLUMNS, with_data=True):
            columns = {name: table.column(name).to_pylist() for name in (*CAMERA_COLUMNS, "time_ns")}
            data = table.column("data")
            for i in range(table.num_rows):
                info = {name: columns[name][i] for name in CAMERA_COLUMNS}
                frame_config = (info["codec"], info["pixel_format"] if info["codec"] == images.RAW else None,
                                info["width"], info["height"])
                if frame_config != config:
                    if video is not None:
                        written.append(video.close())
                        video = None
                    _note_undecodable(job, session, stream, start.waiting)
                    config, start = frame_config, CodedStart(info["codec"])
                frame = data[i].as_buffer()
                if video is None:
                    prefix = start.first_frame_prefix(frame.to_pybytes())
                    if prefix is None:
                        continue
                    folder.mkdir(parents=True, exist_ok=True)
                    video = VideoFile.open(names.next(folder, stream, "mp4"), config, lossless, job, session, stream)
                    video.sidecar["dropped_before_keyframe"] = start.waiting
                    _note_undecodable(job, session, stream, start.waiting)
                    if prefix:
                        video.sidecar["parameter_sets_prepended"] = True
                        frame = prefix + frame.to_pybytes()
                    start.waiting = 0
                video.add(info, columns["time_ns"][i], frame)
            progress(table.num_rows)
        if video is not None:
            written.append(video.close())
            video = None
        _note_undecodable(job, session, stream, start.waiting)
    finally:
        if video is not None:
            video.abandon()
    return written


# NAL unit types of the parameter sets a decoder needs before the first picture.
PARAMETER_SETS = {images.H264: (7, 8), images.H265: (32, 33, 34)}  # SPS, PPS; VPS, SPS, PPS


@dataclass
class CodedStart:
    """Where a run of H.264/H.265 frames can start: at a keyframe, with its parameter sets in the
    keyframe or in a frame before it in the window (then they are put in front of the first
    frame, as MP4 muxing takes them from the first packet). Other codecs start anywhere."""

    codec: int | None
    waiting: int = 0  # frames before the start: they cannot be decoded
    seen: dict[int, bytes] = field(default_factory=dict)  # the latest parameter set of each type, start code on

    def first_frame_prefix(self, data: bytes) -> bytes | None:
        """None while the run cannot start at this frame; else the bytes to put in front of it."""
        if self.codec not in PARAMETER_SETS:
            return b""
        needed = PARAMETER_SETS[self.codec]
        found = {kind: unit for kind, unit in _nal_units(self.codec, data) if kind in needed}
        if images.is_keyframe(self.codec, data) and all(k in found or k in self.seen for k in needed):
            return b"".join(self.seen[k] for k in needed if k not in found)
        self.seen.update(found)
        self.waiting += 1
        return None


def _nal_units(codec: int, data: bytes) -> list[tuple[int, bytes]]:
    """(type, unit with a 4-byte start code) of each NAL unit of an Annex B access unit."""
    starts, at = [], data.find(b"\x00\x00\x01")
    while at >= 0:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    units = []
    for begin, end in zip(starts, [*starts[1:], len(data) + 3], strict=True):
        unit = data[begin:end - 3].rstrip(b"\x00")
        if unit:
            kind = unit[0] & 0x1F if codec == images.H264 else (unit[0] >> 1) & 0x3F
            units.append((kind, b"\x00\x00\x00\x01" + unit))
    return units


def _note_undecodable(job: ExportJob, session, stream: str, frames: int) -> None:
    if frames:
        job.notes.append(f"{session.serial} {stream}: {frames} frame(s) left out, no keyframe with its parameter "
                         f"sets before them in the window")


@dataclass
class VideoFile:
    path: Path
    config: tuple  # codec, pixel format (RAW only), width, height
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    copy: bool
    lossless: bool
    coding: str  # what the sidecar says about how frames were written
    sidecar: dict
    pad: tuple[int, int] = (0, 0)  # rows, columns added to reach yuv420p's even sizes
    first_ns: int | None = None
    frames: int = 0
    increasing: IncreasingDts = field(default_factory=IncreasingDts)

    @classmethod
    def open(cls, path: Path, config: tuple, lossless: bool, job: ExportJob, session, stream_name: str) -> VideoFile:
        codec, pixel_format, width, height = config
        if codec not in COPIED and codec != images.RAW:
            raise ExportError(f"{session.serial} {stream_name}: camera codec {codec} is not one the mp4 export knows")
        container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        pad = (0, 0)
        try:
            if codec in COPIED:
                stream = container.add_mux_stream(COPIED[codec], width=width, height=height, time_base=TIME_BASE)
                coding = f"{COPIED[codec]} copied"
            else:
                encoder, pix_fmt, options = _raw_encoding(pixel_format, lossless)
                if pix_fmt == "yuv420p":
                    pad = (height % 2, width % 2)
                stream = container.add_stream(encoder)
                stream.width, stream.height, stream.pix_fmt = width + pad[1], height + pad[0], pix_fmt
                stream.time_base = stream.codec_context.time_base = TIME_BASE
                stream.options = options
                # Say how the pixels are to be read: GRAY8 and RGB24 become yuv420p through
                # swscale's BT.601 limited range; lossless gray keeps the stored full-range values.
                if pixel_format in (images.GRAY8, images.RGB24) and pix_fmt == "yuv420p":
                    stream.codec_context.colorspace, stream.codec_context.color_range = COLORSPACE_BT601, RANGE_LIMITED
                elif pix_fmt == "gray":
                    stream.codec_context.color_range = RANGE_FULL
                coding = f"{encoder} {pix_fmt} " + " ".join(f"{k}={v}" for k, v in options.items())
        except BaseException:
            container.close()
            path.unlink(missing_ok=True)
            raise
        sidecar = {"serial": session.serial, "session_id": session.session_id, "stream": stream_name,
                   "codec": CODEC_NAMES.get(codec, str(codec)), "width": width, "height": height}
        if codec == images.RAW:
            sidecar["pixel_format"] = PIXEL_FORMAT_NAMES.get(pixel_format, str(pixel_format))
        if any(pad):
            sidecar["padded_to"] = [width + pad[1], height + pad[0]]
        sidecar.update(clock=job.clock.name, coding=coding, lossless=codec in COPIED or lossless)
        return cls(path, config, container, stream, codec in COPIED, lossless, coding, sidecar, pad)

    def add(self, info: dict, time_ns: int, data) -> None:
        codec = self.config[0]
        if self.first_ns is None:
            self.first_ns = time_ns
            self.sidecar["first_frame_number"] = info["frame_number"]
        ticks = (time_ns - self.first_ns + NS_PER_TICK // 2) // NS_PER_TICK
        if self.copy:
            packet = av.Packet(data)
            packet.dts, packet.pts = self.increasing(0, ticks, ticks)
            packet.time_base = TIME_BASE
            packet.stream = self.stream
            packet.is_keyframe = codec == images.JPEG or images.is_keyframe(codec, bytes(data))
            self.container.mux(packet)
        else:
            try:
                frame = self._raw_frame(info, data)
            except images.FrameError as exc:
                raise ExportError(f"{self.sidecar['serial']} {self.sidecar['stream']} frame {info['frame_number']}: "
                                  f"{exc}") from None
            frame.pts, _ = self.increasing(0, ticks, ticks)
            frame.time_base = TIME_BASE
            self.container.mux(self.stream.encode(frame))
        self.sidecar["last_frame_number"] = info["frame_number"]
        self.frames += 1

    def _raw_frame(self, info: dict, data) -> av.VideoFrame:
        pixels = np.frombuffer(data, np.uint8)
        fmt = info["pixel_format"]
        if fmt == images.YUV420P:
            if info["width"] % 2 or info["height"] % 2:
                raise images.FrameError(f"{self.sidecar['stream']}: a YUV420P frame of odd size "
                                        f"{info['width']}x{info['height']}")
            return images.yuv420p_frame(pixels, info["width"], info["height"], info["stride_bytes"])
        image = images.raw_image(info, pixels)
        if any(self.pad):
            spread = ((0, self.pad[0]), (0, self.pad[1])) + (((0, 0),) if image.ndim == 3 else ())
            image = np.pad(image, spread, mode="edge")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray" if image.ndim == 2 else "rgb24")

    def close(self) -> tuple[Path, int]:
        if not self.copy:
            self.container.mux(self.stream.encode(None))
        self.container.close()
        self.sidecar.update(pts_zero_time_ns=self.first_ns, time_base=f"{TIME_BASE.numerator}/{TIME_BASE.denominator}",
                            frames=self.frames, timestamps_adjusted=self.increasing.adjusted)
        write_sidecar(self.path, self.sidecar)
        return self.path, self.frames

    def abandon(self) -> None:
        try:
            self.container.close()
        except (av.error.FFmpegError, ValueError):
            pass  # the export fails anyway and its partial output is removed


def _raw_encoding(pixel_format: int, lossless: bool) -> tuple[str, str, dict]:
    """(encoder, pixel format, options) for RAW frames of a pixel format. Without B-frames, so
    that every frame's DTS is its PTS and a reader sees the frames in capture order."""
    if not lossless:
        return "libx264", "yuv420p", {"crf": CRF, "preset": PRESET, "bf": "0"}
    exact = {"qp": "0", "preset": PRESET, "bf": "0"}
    if pixel_format == images.GRAY8:
        return "libx264", "gray", exact
    if pixel_format == images.RGB24:
        return "libx264rgb", "rgb24", exact  # yuv444p would round each pixel through a colour conversion
    if pixel_format == images.YUV420P:
        return "libx264", "yuv420p", exact
    raise ExportError(f"RAW pixel format {pixel_format} is not one the mp4 export knows")


def write_sidecar(path: Path, described: dict) -> None:
    path.with_name(path.name + ".json").write_text(json.dumps(described, indent=1) + "\n")


# -- audio ---------------------------------------------------------------------------------------

def _write_audio(job, session, stream, folder, names, progress) -> list[tuple[Path, int]]:
    written: list[tuple[Path, int]] = []
    audio: WavFile | None = None
    skipped_opus = 0
    try:
        for table in job.rows(session, stream, columns=AUDIO_COLUMNS, with_data=True):
            columns = {name: table.column(name).to_pylist() for name in (*AUDIO_COLUMNS, "time_ns")}
            data = table.column("data")
            for i in range(table.num_rows):
                codec, channels, rate = columns["codec"][i], columns["channels"][i], columns["sample_rate_hz"][i]
                if codec not in PCM_BYTES:
                    skipped_opus += 1
                    continue
                block = data[i].as_buffer()
                if audio is not None and (audio.config != (codec, channels, rate)
                                          or audio.data_bytes + block.size > WAV_MAX_BYTES):
                    written.append(audio.close())
                    audio = None
                if audio is None:
                    folder.mkdir(parents=True, exist_ok=True)
                    audio = WavFile.open(names.next(folder, stream, "wav"), (codec, channels, rate), job, session, stream)
                audio.add(columns["time_ns"][i], block)
            progress(table.num_rows)
        if audio is not None:
            written.append(audio.close())
            audio = None
    finally:
        if audio is not None:
            audio.wav.close()
    if skipped_opus:
        job.notes.append(f"{session.serial} {stream}: {skipped_opus} OPUS blocks left out (the mp4 export writes PCM "
                         f"as WAV; the parquet export keeps OPUS packets as stored)")
    return written


@dataclass
class WavFile:
    path: Path
    config: tuple  # codec, channels, sample rate
    wav: wave.Wave_write
    sidecar: dict
    first_ns: int | None = None
    next_ns: float | None = None  # when the samples written so far end, on the export clock
    samples: int = 0
    data_bytes: int = 0
    blocks: int = 0
    gaps: int = 0

    @classmethod
    def open(cls, path: Path, config: tuple, job: ExportJob, session, stream_name: str) -> WavFile:
        codec, channels, rate = config
        wav = wave.open(str(path), "wb")
        wav.setnchannels(channels)
        wav.setsampwidth(PCM_BYTES[codec])
        wav.setframerate(rate)
        sidecar = {"serial": session.serial, "session_id": session.session_id, "stream": stream_name,
                   "codec": AUDIO_CODECS.label(codec), "channels": channels, "sample_rate_hz": rate,
                   "clock": job.clock.name}
        return cls(path, config, wav, sidecar)

    def add(self, time_ns: int, data) -> None:
        codec, channels, rate = self.config
        frame_bytes = PCM_BYTES[codec] * channels
        whole = len(data) // frame_bytes * frame_bytes
        count = whole // frame_bytes
        if self.first_ns is None:
            self.first_ns = time_ns
        elif abs(time_ns - self.next_ns) > 0.5 * max(count, 1) * 1e9 / rate:
            self.gaps += 1  # a block missing (or overlapping): later samples play earlier than captured
        self.wav.writeframesraw(memoryview(data)[:whole])
        self.samples += count
        self.data_bytes += whole
        self.blocks += 1
        self.next_ns = time_ns + count * 1e9 / rate

    def close(self) -> tuple[Path, int]:
        self.wav.close()  # writes the header's sizes
        self.sidecar.update(first_sample_time_ns=self.first_ns, samples=self.samples, blocks=self.blocks, gaps=self.gaps)
        write_sidecar(self.path, self.sidecar)
        return self.path, self.blocks

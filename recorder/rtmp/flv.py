"""The FLV container: the header, writing a tag, scanning a file's tags, and reading the headers of
video, audio and script tags.

    header   "FLV" version=1 flags(audio 0x04 | video 0x01) data_offset=9, then PreviousTagSize0=0
    tag      type(1) data_size(3) timestamp(3) timestamp_extended(1) stream_id(3)=0, the data,
             then PreviousTagSize(4) = 11 + data_size

A tag is written with one write() of header, data and PreviousTagSize, so a file cut anywhere
(a kill -9, a full disk) ends in at most one incomplete tag; scan_flv() finds the end of the last
complete one. A tag's `offset` is where its 11-byte header starts and its `size` is its data
size, as in the FLV header.

Video data starts with frame_type(4 bits) codec_id(4 bits); for AVC and HEVC (codec id 12) an
AVCPacketType (0 sequence header, 1 NALUs, 2 end of sequence) and a signed 24-bit composition
time offset in ms follow. Enhanced RTMP ("E-RTMP", bit 0x80 of the first byte) replaces the codec
id by a packet type and puts a FourCC after it. Audio data starts with sound_format(4)
sound_rate(2) sound_size(1) sound_type(1); AAC adds an AACPacketType (0 AudioSpecificConfig,
1 raw frame).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..storage.files import write_all  # noqa: F401  (the recording writes tags through F.write_all)
from . import amf0

AUDIO, VIDEO, SCRIPT = 8, 9, 18
TAG_TYPES = (AUDIO, VIDEO, SCRIPT)
HEADER_SIZE = 9
FILE_HEADER_SIZE = HEADER_SIZE + 4  # with PreviousTagSize0
TAG_HEADER_SIZE = 11
TAG_TRAILER_SIZE = 4
MAX_DATA_SIZE = (1 << 24) - 1
FLAG_AUDIO, FLAG_VIDEO = 0x04, 0x01

# Video
KEYFRAME, INTER_FRAME, DISPOSABLE_INTER_FRAME, GENERATED_KEYFRAME, COMMAND_FRAME = 1, 2, 3, 4, 5
CODEC_AVC, CODEC_HEVC = 7, 12  # 12: the widespread (non-Adobe) H.265 extension
SEQUENCE_HEADER, NALU, END_OF_SEQUENCE = 0, 1, 2
VIDEO_CODECS = {2: "flv1", 3: "flashsv", 4: "vp6f", 5: "vp6a", 6: "flashsv2", CODEC_AVC: "h264", CODEC_HEVC: "hevc"}
# Enhanced RTMP packet types
EX_SEQUENCE_START, EX_CODED_FRAMES, EX_SEQUENCE_END, EX_CODED_FRAMES_X, EX_METADATA = 0, 1, 2, 3, 4
EX_MPEG2TS_SEQUENCE_START, EX_MULTITRACK, EX_MOD_EX = 5, 6, 7
FOURCC_CODECS = {b"avc1": "h264", b"hvc1": "hevc", b"av01": "av1", b"vp09": "vp9"}

# Audio
FORMAT_AAC = 10
AAC_SEQUENCE_HEADER, AAC_RAW = 0, 1
AUDIO_CODECS = {0: "pcm", 1: "adpcm_swf", 2: "mp3", 3: "pcm_s16le", 4: "nellymoser", 5: "nellymoser",
                6: "nellymoser", 7: "pcm_alaw", 8: "pcm_mulaw", FORMAT_AAC: "aac", 11: "speex", 14: "mp3",
                15: "device_specific"}
SOUND_RATES = (5512, 11025, 22050, 44100)
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_OBJECT_TYPES = {1: "AAC Main", 2: "AAC-LC", 3: "AAC SSR", 4: "AAC LTP", 5: "HE-AAC", 29: "HE-AACv2"}

_TAG_HEADER = struct.Struct(">B3sI3s")  # type, size, timestamp low 24 + extended 8 (fixed below)


class FlvError(ValueError):
    pass


# -- writing -------------------------------------------------------------------------------------


def file_header(*, audio: bool = True, video: bool = True) -> bytes:
    """The 9-byte FLV header and PreviousTagSize0."""
    flags = (FLAG_AUDIO if audio else 0) | (FLAG_VIDEO if video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", HEADER_SIZE) + b"\x00\x00\x00\x00"


def tag_header(tag_type: int, timestamp: int, size: int) -> bytes:
    if not 0 <= size <= MAX_DATA_SIZE:
        raise FlvError(f"tag data of {size} bytes does not fit FLV's 24-bit size")
    ts = timestamp & 0xFFFFFFFF
    return bytes((tag_type, size >> 16, (size >> 8) & 0xFF, size & 0xFF,
                  (ts >> 16) & 0xFF, (ts >> 8) & 0xFF, ts & 0xFF, ts >> 24, 0, 0, 0))


def encode_tag(tag_type: int, timestamp: int, data: bytes) -> bytes:
    """A whole tag: header, data, PreviousTagSize (the bytes for one write)."""
    size = len(data)
    return b"".join((tag_header(tag_type, timestamp, size), data, struct.pack(">I", TAG_HEADER_SIZE + size)))


# -- tag data headers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoHeader:
    frame_type: int
    codec_id: int  # 0 for an enhanced-RTMP tag (see fourcc)
    packet_type: int | None  # AVCPacketType (AVC/HEVC), or the enhanced-RTMP packet type
    composition_offset: int  # ms, signed; 0 where the tag carries none
    fourcc: bytes | None = None  # enhanced RTMP only
    data_offset: int = 1  # where the codec's bytes start in the tag data

    @property
    def keyframe(self) -> bool:
        return self.frame_type in (KEYFRAME, GENERATED_KEYFRAME)

    @property
    def enhanced(self) -> bool:
        return self.fourcc is not None

    @property
    def sequence_header(self) -> bool:
        if self.enhanced:
            return self.packet_type in (EX_SEQUENCE_START, EX_MPEG2TS_SEQUENCE_START)
        return self.codec_id in (CODEC_AVC, CODEC_HEVC) and self.packet_type == SEQUENCE_HEADER

    @property
    def is_frame(self) -> bool:
        """A coded picture (not a sequence header, end of sequence, metadata or command)."""
        if self.frame_type == COMMAND_FRAME:
            return False
        if self.enhanced:
            return self.packet_type in (EX_CODED_FRAMES, EX_CODED_FRAMES_X)
        if self.codec_id in (CODEC_AVC, CODEC_HEVC):
            return self.packet_type == NALU
        return True

    @property
    def codec(self) -> str:
        if self.enhanced:
            known = FOURCC_CODECS.get(self.fourcc)
            if known:
                return known
            # An unknown FourCC is shown as text only when it is one (it names a folder of
            # nothing, but it reaches the status page and the console).
            text = self.fourcc.decode("latin-1")
            return text if text.isascii() and text.isprintable() else f"fourcc 0x{self.fourcc.hex()}"
        return VIDEO_CODECS.get(self.codec_id, f"flv-video-{self.codec_id}")


@dataclass(frozen=True, slots=True)
class AudioHeader:
    sound_format: int
    sound_rate: int  # 0..3, see SOUND_RATES (AAC always says 3: the config has the real rate)
    sound_size: int  # 0: 8-bit, 1: 16-bit
    sound_type: int  # 0: mono, 1: stereo
    aac_packet_type: int | None  # AAC only

    @property
    def sequence_header(self) -> bool:
        return self.sound_format == FORMAT_AAC and self.aac_packet_type == AAC_SEQUENCE_HEADER

    @property
    def is_frame(self) -> bool:
        return not self.sequence_header

    @property
    def data_offset(self) -> int:
        return 2 if self.sound_format == FORMAT_AAC else 1

    @property
    def codec(self) -> str:
        return AUDIO_CODECS.get(self.sound_format, f"flv-audio-{self.sound_format}")

    @property
    def rate_hz(self) -> int:
        return SOUND_RATES[self.sound_rate]

    @property
    def channels(self) -> int:
        return 2 if self.sound_type else 1

    @property
    def bits(self) -> int:
        return 16 if self.sound_size else 8


def parse_video_header(data: bytes) -> VideoHeader:
    """The header at the start of a video tag's data (at least 5 bytes for AVC)."""
    if not data:
        raise FlvError("empty video tag")
    b0 = data[0]
    if b0 & 0x80:  # enhanced RTMP
        frame_type, packet_type = (b0 >> 4) & 0x07, b0 & 0x0F
        if len(data) < 5:
            raise FlvError("enhanced video tag shorter than its FourCC")
        fourcc = bytes(data[1:5])
        cts, start = 0, 5
        if packet_type == EX_CODED_FRAMES and fourcc in (b"avc1", b"hvc1"):
            if len(data) < 8:
                raise FlvError("enhanced video tag shorter than its composition time")
            cts, start = _s24(data, 5), 8
        return VideoHeader(frame_type, 0, packet_type, cts, fourcc, start)
    frame_type, codec_id = b0 >> 4, b0 & 0x0F
    if codec_id in (CODEC_AVC, CODEC_HEVC):
        if len(data) < 5:
            raise FlvError(f"{VIDEO_CODECS[codec_id]} video tag shorter than 5 bytes")
        return VideoHeader(frame_type, codec_id, data[1], _s24(data, 2), None, 5)
    return VideoHeader(frame_type, codec_id, None, 0, None, 1)


def parse_audio_header(data: bytes) -> AudioHeader:
    if not data:
        raise FlvError("empty audio tag")
    b0 = data[0]
    fmt = b0 >> 4
    packet_type = None
    if fmt == FORMAT_AAC:
        if len(data) < 2:
            raise FlvError("AAC audio tag shorter than 2 bytes")
        packet_type = data[1]
    return AudioHeader(fmt, (b0 >> 2) & 0x03, (b0 >> 1) & 0x01, b0 & 0x01, packet_type)


def _s24(data, at: int) -> int:
    v = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2]
    return v - (1 << 24) if v & 0x800000 else v


# -- codec configurations ------------------------------------------------------------------------


@dataclass(frozen=True)
class AvcConfig:
    profile: int
    level: int
    width: int | None
    height: int | None
    profile_name: str

    def as_dict(self) -> dict:
        return {"profile": self.profile_name, "level": self.level / 10, "width": self.width, "height": self.height}


_AVC_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10", 122: "High 4:2:2",
                 244: "High 4:4:4 Predictive", 44: "CAVLC 4:4:4"}
_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)


def parse_avc_config(record: bytes) -> AvcConfig:
    """An AVCDecoderConfigurationRecord (the data of an AVC sequence header after its 5-byte tag
    header): profile, level and, from the first SPS, the cropped picture size."""
    if len(record) < 7 or record[0] != 1:
        raise FlvError("not an AVCDecoderConfigurationRecord")
    profile, level = record[1], record[3]
    width = height = None
    if record[5] & 0x1F and len(record) >= 8:
        n = struct.unpack_from(">H", record, 6)[0]
        sps = record[8:8 + n]
        if len(sps) == n and n > 4:
            try:
                width, height = _sps_size(sps)
            except (IndexError, FlvError):
                pass
    name = _AVC_PROFILES.get(profile, str(profile))
    if profile == 66 and len(record) > 2 and record[2] & 0x40:
        name = "Constrained Baseline"
    return AvcConfig(profile, level, width, height, name)


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise FlvError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00)."""
    out, zeros = bytearray(), 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _sps_size(sps: bytes) -> tuple[int, int]:
    r = _Bits(_unescape(sps[1:]))  # after the NAL header
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format, separate_planes = 1, 0
    if profile in _HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format == 3:
            separate_planes = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.u(1):
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    chroma_array_type = 0 if separate_planes else chroma_format
    if chroma_array_type == 0:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x = 2 if chroma_format in (1, 2) else 1
        unit_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    return width, height


@dataclass(frozen=True)
class AacConfig:
    object_type: int
    sample_rate: int | None
    channels: int

    @property
    def profile(self) -> str:
        return AAC_OBJECT_TYPES.get(self.object_type, f"AAC object type {self.object_type}")

    def as_dict(self) -> dict:
        return {"profile": self.profile, "sample_rate": self.sample_rate, "channels": self.channels}


def parse_aac_config(asc: bytes) -> AacConfig:
    """An AudioSpecificConfig (the data of an AAC sequence header after its 2-byte tag header)."""
    if len(asc) < 2:
        raise FlvError("AudioSpecificConfig shorter than 2 bytes")
    r = _Bits(asc)
    try:
        object_type = r.u(5)
        if object_type == 31:
            object_type = 32 + r.u(6)
        index = r.u(4)
        rate = r.u(24) if index == 15 else (AAC_SAMPLE_RATES[index] if index < len(AAC_SAMPLE_RATES) else None)
        channels = r.u(4)
    except IndexError as e:
        raise FlvError("AudioSpecificConfig cut short") from e
    return AacConfig(object_type, rate, channels)


# -- AMF0 (script tags) --------------------------------------------------------------------------


def read_script_data(data: bytes) -> tuple[str | None, object]:
    """A script tag's data: its name ("onMetaData") and the value after it (a dict for an ECMA
    array or object). Raises FlvError on anything that is not valid AMF0."""
    try:
        name, at = amf0.decode(data, 0)
        value, _ = amf0.decode(data, at) if at < len(data) else (None, at)
    except amf0.Amf0Error as e:
        raise FlvError(f"bad AMF0 in script data: {e}") from e
    return (name if isinstance(name, str) else None), _dates_as_ms(value)


def _dates_as_ms(value):
    """AMF0 dates as the milliseconds since the epoch that the FLV holds."""
    if isinstance(value, datetime):
        return value.timestamp() * 1000
    if isinstance(value, dict):
        return {k: _dates_as_ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_ms(v) for v in value]
    return value


LIVE_METADATA_ZEROED = ("duration", "filesize")


def live_metadata(data: bytes) -> bytes:
    """onMetaData script data with its `duration` and `filesize` numbers set to 0, byte for byte
    otherwise: a publisher that first wrote a file may send its figures, and a player trusts
    them over the recording's own timestamps (0 means live: unknown)."""
    out = bytearray(data)
    try:
        _, at = amf0.decode(data, 0)
        marker = data[at]
        if marker not in (0x03, 0x08):
            return bytes(out)
        at += 5 if marker == 0x08 else 1
        while True:
            n = struct.unpack_from(">H", data, at)[0]
            at += 2
            if n == 0 and data[at] == 0x09:
                break
            key = bytes(data[at:at + n]).decode("utf-8", errors="replace")
            at += n
            if key in LIVE_METADATA_ZEROED and data[at] == 0x00 and at + 9 <= len(data):
                out[at + 1:at + 9] = struct.pack(">d", 0.0)
            _, at = amf0.decode(data, at)
    except (IndexError, struct.error, amf0.Amf0Error):
        pass  # what could be walked is done; the rest is left as sent
    return bytes(out)


def json_safe(value):
    """AMF0 values as JSON can hold them: NaN and infinities become None, dates ISO 8601 text,
    bytes hex, anything else unknown its str()."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# -- scanning ------------------------------------------------------------------------------------


@dataclass(slots=True)
class FlvTag:
    type: int
    timestamp: int  # ms, 32 bits
    offset: int  # of the 11-byte tag header
    size: int  # data size
    video: VideoHeader | None = None
    audio: AudioHeader | None = None

    @property
    def end(self) -> int:
        """Offset just after this tag's PreviousTagSize."""
        return self.offset + TAG_HEADER_SIZE + self.size + TAG_TRAILER_SIZE

    @property
    def data_offset(self) -> int:
        return self.offset + TAG_HEADER_SIZE


@dataclass
class FlvScan:
    path: Path
    file_size: int
    header_ok: bool  # the 9-byte header (and PreviousTagSize0) is there and valid
    flags: int = 0
    data_offset: int = HEADER_SIZE
    tags: list[FlvTag] = field(default_factory=list)
    end: int = 0  # offset after the last complete tag (the header's end with no tags)
    problem: str | None = None  # why scanning stopped before the end of the file, if it did

    @property
    def truncated_bytes(self) -> int:
        """Bytes after the last complete tag: a cut tag, or anything unreadable."""
        return self.file_size - self.end

    @property
    def complete(self) -> bool:
        return self.header_ok and self.end == self.file_size

    def of_type(self, tag_type: int) -> list[FlvTag]:
        return [t for t in self.tags if t.type == tag_type]


def scan_flv(path, *, head_bytes: int = 16) -> FlvScan:
    """Walk a FLV's tags by their headers (one small read per tag, never the data), checking each
    tag's PreviousTagSize. Stops at the first incomplete or inconsistent tag: `end` is the
    offset after the last complete one, where an append may continue. Data bytes of each tag up
    to `head_bytes` are kept in `head` (video and audio headers are parsed from them)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        return _scan(path, fd, head_bytes)
    finally:
        os.close(fd)


def _scan(path: Path, fd: int, head_bytes: int) -> FlvScan:
    file_size = os.fstat(fd).st_size
    head = os.pread(fd, FILE_HEADER_SIZE, 0)
    scan = FlvScan(path, file_size, header_ok=False)
    if head[:3] != b"FLV"[:len(head[:3])]:
        scan.problem = "not an FLV file"
        return scan
    if len(head) < FILE_HEADER_SIZE:
        scan.problem = "cut header"
        return scan
    scan.flags = head[4]
    scan.data_offset = struct.unpack_from(">I", head, 5)[0]
    pos = scan.data_offset + 4
    if scan.data_offset < HEADER_SIZE or file_size < pos:
        scan.problem = "bad header" if scan.data_offset < HEADER_SIZE else "cut header"
        return scan
    scan.header_ok = True
    scan.end = pos
    want = TAG_HEADER_SIZE + head_bytes
    hdr = os.pread(fd, want, pos)
    while pos < file_size:
        if len(hdr) < TAG_HEADER_SIZE:
            scan.problem = "cut tag header"
            break
        tag_type = hdr[0] & 0x1F  # bit 5 is the filter (encryption) flag
        size = (hdr[1] << 16) | (hdr[2] << 8) | hdr[3]
        ts = (hdr[7] << 24) | (hdr[4] << 16) | (hdr[5] << 8) | hdr[6]
        if tag_type not in TAG_TYPES or hdr[8:11] != b"\x00\x00\x00":
            scan.problem = f"bad tag header at {pos}"
            break
        end = pos + TAG_HEADER_SIZE + size + TAG_TRAILER_SIZE
        if end > file_size:
            scan.problem = "cut tag"
            break
        nxt = os.pread(fd, TAG_TRAILER_SIZE + want, end - TAG_TRAILER_SIZE)  # trailer + next header
        if len(nxt) < TAG_TRAILER_SIZE or struct.unpack_from(">I", nxt)[0] != TAG_HEADER_SIZE + size:
            scan.problem = f"PreviousTagSize does not match the tag at {pos}"
            break
        body = hdr[TAG_HEADER_SIZE:TAG_HEADER_SIZE + min(size, head_bytes)]
        tag = FlvTag(tag_type, ts, pos, size)
        try:
            if tag_type == VIDEO:
                tag.video = parse_video_header(body)
            elif tag_type == AUDIO:
                tag.audio = parse_audio_header(body)
        except FlvError:
            pass  # a complete tag whose data is odd: kept, without a parsed header
        scan.tags.append(tag)
        pos = scan.end = end
        hdr = nxt[TAG_TRAILER_SIZE:]
    return scan


def read_tag_data(path, tag: FlvTag) -> bytes:
    with open(path, "rb") as f:
        f.seek(tag.data_offset)
        data = f.read(tag.size)
    if len(data) != tag.size:
        raise FlvError(f"tag at {tag.offset} runs past the end of the file")
    return data

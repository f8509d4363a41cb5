"""`recorder serve` options that change how sessions are stored."""

from __future__ import annotations

import signal
import struct
from pathlib import Path

import numpy as np
import trio
import zstandard
from server_support import (
    ServerProcess,
    assert_session_equals,
    free_port,
    get,
    make_windows,
    post_windows,
    session_folders,
)
from storage_support import expected_from

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.storage.compression import RAW_IMAGES, RAW_STORED_LEVEL


async def recorded_by_a_server(data_dir, args, device, windows) -> Path:
    """The device's windows in one request to a `recorder serve` with `args` (stopped with
    SIGTERM once answered): the session folder."""
    server = ServerProcess(data_dir, data_dir.with_suffix(".log"), args=args)
    await server.start()
    try:
        status, _ = await post_windows(server.url, None, device.headers(), windows)
        assert status == 200
        server.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    finally:
        await server.aclose()
    (session,) = session_folders(data_dir)
    return session


def blob_bytes(session) -> int:
    return sum(p.stat().st_size for p in session.rglob("_blobs/*.zst"))


async def test_blob_level_trades_disk_for_cpu_and_keeps_every_frame(tmp_path):
    """The same device into a default server and one told --blob-level -5: both store every
    frame exactly; the fast level takes more disk, and a RAW image's frame is the one zstd
    writes at level -5 (after the rows filter, as every RAW image): the option reached the
    blob writer."""
    device = make_fleet(1, seed=12, profile="profile9")[0]
    windows = make_windows(device, 3)
    expected = expected_from(windows)
    sizes = {}
    for name, args in (("default", ()), ("fast", ("--blob-level", "-5"))):
        session = await recorded_by_a_server(tmp_path / name, args, device, windows)
        assert_session_equals(session, expected)
        sizes[name] = blob_bytes(session)
        level = -5 if name == "fast" else 1  # RAW images: the store's level, or 1 if that is lower
        with open_session(session) as reader:
            row = reader.table("slam-side-left").slice(0, 1).to_pylist()[0]
            stored = (session / "slam-side-left" / row["file"]).read_bytes()[row["offset"]:row["offset"] + row["length"]]
            image = np.frombuffer(reader.blob("slam-side-left", 0), np.uint8).reshape(-1, row["stride_bytes"])
        filtered = np.concatenate([image[:1], image[1:] - image[:-1]])  # uint8: modulo 256
        assert stored == (struct.pack("<III", 0x184D2A5E, 4, row["stride_bytes"])
                          + zstandard.ZstdCompressor(level=level, write_content_size=True).compress(filtered.tobytes()))
    assert sizes["fast"] > sizes["default"], sizes


async def test_raw_images_store_keeps_every_frame_as_it_came_in_plain_zstd_frames(tmp_path):
    """--raw-images store: every frame stored exactly, a RAW image's frame is the image itself in a
    zstd frame of raw blocks (no rows filter, nothing to undo), so the blob files are as big as
    the images, and decompressing a whole blob file (as `zstd -d` does) gives the images one after another."""
    device = make_fleet(1, seed=13, profile="profile9")[0]
    windows = make_windows(device, 3)
    session = await recorded_by_a_server(tmp_path / "data", ("--raw-images", "store"), device, windows)
    assert_session_equals(session, expected_from(windows))
    with open_session(session) as reader:
        index = reader.table("slam-side-left")
        images = [reader.blob("slam-side-left", i) for i in range(index.num_rows)]
        rows = index.to_pylist()
    [file] = {row["file"] for row in rows}
    whole = (session / "slam-side-left" / file).read_bytes()
    for row, image in zip(rows, images, strict=True):
        stored = whole[row["offset"]:row["offset"] + row["length"]]
        assert stored == zstandard.ZstdCompressor(level=RAW_STORED_LEVEL, write_content_size=True).compress(image)
        assert len(image) < len(stored) < len(image) + 64  # raw blocks: the image and a few headers
    with zstandard.ZstdDecompressor().stream_reader(whole, read_across_frames=True) as frames:  # as `zstd -d`
        assert frames.read() == b"".join(images)


def test_raw_images_choices_are_the_stores():
    from recorder.cli import serve

    [option] = [p for p in serve.params if p.name == "raw_images"]
    assert tuple(option.type.choices) == RAW_IMAGES


async def test_blob_level_out_of_range_is_a_usage_error(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "serve.log", args=("--blob-level", "40"))
    try:
        await server.start(timeout=10)
    except AssertionError as exc:
        assert "--blob-level" in str(exc) and "40" in str(exc)
    else:
        await server.aclose()
        raise AssertionError("a blob level of 40 was accepted")


async def test_rtmp_listens_by_default_and_rtmp_port_0_turns_it_off(tmp_path):
    rtmp_port = free_port()
    on = ServerProcess(tmp_path / "on", tmp_path / "on.log", args=("--rtmp-port", str(rtmp_port)))
    await on.start()
    try:
        await on.said(f"RTMP server listening on rtmp://127.0.0.1:{rtmp_port}")
        assert (await get(on.url, "/status")).json["rtmp"]["streams"] == []
        stream = await trio.open_tcp_stream("127.0.0.1", rtmp_port)
        await stream.aclose()
    finally:
        await on.aclose()
    off = ServerProcess(tmp_path / "off", tmp_path / "off.log", args=("--rtmp-port", "0"))
    await off.start()
    try:
        assert "RTMP" not in off.output
        assert "rtmp" not in (await get(off.url, "/status")).json
    finally:
        await off.aclose()


def test_the_default_rtmp_port_is_1935():
    from click.testing import CliRunner

    from recorder.cli import main

    help_text = " ".join(CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output.split())
    assert "--rtmp-port" in help_text and "default: 1935" in help_text, help_text


async def test_rtmps_without_a_certificate_is_a_usage_error(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "serve.log", args=("--rtmps-port", str(free_port())))
    try:
        await server.start(timeout=10)  # ServerProcess serves --plain-http
    except AssertionError as exc:
        assert "--rtmps-port needs the server's certificate" in str(exc)
    else:
        await server.aclose()
        raise AssertionError("--rtmps-port was accepted with --plain-http")

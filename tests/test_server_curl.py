"""curl as a real client: the sample bodies sent chunked over TLS with the devices' headers (the
~33 KB calibration header from a header file) are answered with 200 JSON and stored as sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from server_support import assert_folders_read_as_datasets, assert_session_equals, records_in
from storage_support import expected_from

from recorder import certs, open_session

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
SERIALS = sorted(p.name for p in SAMPLES.iterdir() if (p / "body.srf").exists())
CURL = "/usr/bin/curl"


async def curl_post(url: str, ca: Path, body: Path, headers: dict[str, str], header_file: Path) -> dict:
    # One header per line; curl reads them with -H @file (the calibration is too long for argv comfort).
    await trio.Path(header_file).write_bytes("".join(f"{k}: {v}\n" for k, v in headers.items()).encode())
    result = await trio.run_process(
        [CURL, "--silent", "--show-error", "--fail-with-body", "--max-time", "60", "--cacert", str(ca),
         "-H", "Transfer-Encoding: chunked", "-H", f"@{header_file}", "--data-binary", f"@{body}",
         "--write-out", "\n%{http_code}", f"{url}/"],
        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    text, _, code = result.stdout.decode().rpartition("\n")
    assert code == "200", result.stdout
    return json.loads(text)


@pytest.mark.skipif(not SERIALS, reason="no sample_data")
async def test_curl_sends_the_sample_bodies_chunked_over_tls(server, certs_dir, tmp_path):
    replies = {}

    async def one(serial):
        headers = json.loads((SAMPLES / serial / "headers.json").read_text())
        replies[serial] = (headers, await curl_post(server.url, certs_dir / certs.CA, SAMPLES / serial / "body.srf",
                                                    headers, tmp_path / f"{serial}.headers"))

    async with trio.open_nursery() as nursery:  # the three devices at once
        for serial in SERIALS:
            nursery.start_soon(one, serial)
    await server.stop()

    for serial in SERIALS:
        headers, reply = replies[serial]
        body = (SAMPLES / serial / "body.srf").read_bytes()
        expected = expected_from([body])
        records = records_in([body])
        assert reply["status"] == "ok"
        assert reply["device"] == serial == headers["device-serial"]
        assert reply["session_id"] == headers["session-id"]
        assert reply["bytes"] == len(body)
        assert reply["records"] == records
        assert reply["highest_sequence"] == expected.highest_sequence == records - 1
        assert (reply["gaps"], reply["resends"], reply["corrupt_bytes"], reply["malformed"]) == (0, 0, 0, 0)

        path = server.session_path(serial, headers["session-id"])
        manifest = assert_session_equals(path, expected, records=records)
        assert manifest["state"] == "finished"
        assert manifest["device_build"] == headers["device-build"]
        with open_session(path) as reader:
            assert reader.calibration_bytes == headers["oatmeal-calibration"].encode()
            assert reader.calibration["DeviceClassInfo"]
            (req,) = reader.requests()
            assert req["headers"]["device-serial"] == serial
            assert req["headers"]["transfer-encoding"] == "chunked"
            assert "oatmeal-calibration" not in req["headers"]
        assert_folders_read_as_datasets(path)


async def test_a_calibration_header_with_utf8_text_is_kept_byte_for_byte(server, certs_dir, tmp_path):
    """Header bytes outside ASCII (a UTF-8 label, say) reach calibration.json exactly as sent."""
    serial = SERIALS[0] if SERIALS else None
    if serial is None:
        pytest.skip("no sample_data")
    headers = json.loads((SAMPLES / serial / "headers.json").read_text())
    calibration = json.loads(headers["oatmeal-calibration"])
    calibration["DeviceClassInfo"]["Note"] = "Ölçüm µm – 測定"
    headers["oatmeal-calibration"] = json.dumps(calibration, ensure_ascii=False, separators=(",", ":"))
    body = tmp_path / "body.srf"
    body.write_bytes((SAMPLES / serial / "body.srf").read_bytes()[:200_000])
    reply = await curl_post(server.url, certs_dir / certs.CA, body, headers, tmp_path / "headers")
    assert reply["status"] == "ok"
    with open_session(server.session_path(serial, headers["session-id"])) as reader:
        assert reader.calibration_bytes == headers["oatmeal-calibration"].encode("utf-8")
        assert reader.calibration["DeviceClassInfo"]["Note"] == "Ölçüm µm – 測定"

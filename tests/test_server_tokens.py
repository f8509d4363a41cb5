"""Access control: device tokens per serial (or any serial, for a bridge), read tokens for
/status, /metrics and /feed, revocation without a restart, a token file that holds no token, the
`recorder tokens` commands, and TLS that refuses old versions and weak ciphers. A real server,
real TLS, real sockets."""

from __future__ import annotations

import concurrent.futures
import ssl
import subprocess
import uuid
import warnings

import h11
import pytest
import trio
from server_support import RECORDER, open_stream, request
from test_server_tls import refused

from recorder import certs, tokens
from recorder.restream.send import restream
from recorder.sdk import StreamDataInterface
from recorder.sdk.live import LiveSource
from recorder.sim import sender
from recorder.sim.fleet import make_fleet


@pytest.fixture
def device():
    fleet = make_fleet(2, seed=43, profile="mp_streaming_demo")
    return [(d.window(0.0, 0.2), d.headers()) for d in fleet]


@pytest.fixture
def token_file(tmp_path):
    return tmp_path / "tokens.json"


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


async def post(server, body, headers, client_ssl, token=None):
    return await request(server.url, headers={**headers, **(bearer(token) if token else {})}, body=body,
                         ssl_context=client_ssl)


async def get(server, path, client_ssl, token=None):
    return await request(server.url, "GET", path, headers=bearer(token) if token else {}, ssl_context=client_ssl)


async def feed_status(server, client_ssl, token=None) -> int:
    """The status of GET /feed's answer (a 200 is a stream that never ends: only its head is read)."""
    stream = await open_stream(server.url, client_ssl)
    conn = h11.Connection(h11.CLIENT)
    fields = [("host", "127.0.0.1"), *(bearer(token).items() if token else ())]
    await stream.send_all(conn.send(h11.Request(method="GET", target="/feed", headers=fields))
                          + conn.send(h11.EndOfMessage()))
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                return event.status_code
    finally:
        await trio.aclose_forcefully(stream)


async def test_a_device_without_a_valid_token_is_refused(start_server, token_file, device, client_ssl):
    tokens.add(token_file, serials=[device[0][1]["device-serial"]])
    server = await start_server(tokens_file=token_file)
    body, headers = device[0]
    reply = await post(server, body, headers, client_ssl)
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    assert "none was sent" in reply.json["error"]
    reply = await post(server, body, headers, client_ssl, token="not-a-token")
    assert reply.status == 401 and "not valid" in reply.json["error"]
    assert not any(server.data_dir.iterdir()), "a refused device must leave nothing behind"


async def test_a_token_writes_its_own_serials_only(start_server, token_file, device, client_ssl):
    (body, headers), (other_body, other_headers) = device
    token, _ = tokens.add(token_file, serials=[headers["device-serial"]], label="glasses 1")
    server = await start_server(tokens_file=token_file)
    reply = await post(server, other_body, other_headers, client_ssl, token=token)
    assert reply.status == 403 and other_headers["device-serial"] in reply.json["error"]
    # Nor by naming its own serial first and another after it (the last is the one stored).
    reply = await post(server, other_body, {**other_headers, "Device-Serial": other_headers["device-serial"],
                                            "device-serial": headers["device-serial"]}, client_ssl, token=token)
    assert reply.status == 403
    assert not (server.data_dir / other_headers["device-serial"]).exists()
    reply = await post(server, body, headers, client_ssl, token=token)
    assert reply.status == 200 and reply.json["records"] > 0
    folder = server.session_path(headers["device-serial"], headers["session-id"])
    assert (folder / "session.json").exists()
    await server.stop()
    for stored in folder.rglob("*"):  # the stored headers keep no credential
        assert stored.is_dir() or token.encode() not in stored.read_bytes(), stored
    assert "authorization" not in (folder / "session.json").read_text().lower()
    # Replayed to a recorder that checks tokens, the session needs one too (replay --to --token).
    copy = await start_server(tokens_file=token_file)
    (report,) = await restream([folder], copy.url, client_ssl, speed=0, timeout_s=10)
    assert "401" in report.error
    (report,) = await restream([folder], copy.url, client_ssl, speed=0, timeout_s=10, token=token)
    assert report.error is None and report.done
    assert (copy.session_path(headers["device-serial"], headers["session-id"]) / "session.json").exists()


async def test_an_any_serial_token_writes_every_serial(start_server, token_file, device, client_ssl):
    token, _ = tokens.add(token_file, any_serial=True, label="bridge")
    reader, _ = tokens.add(token_file, read=True)
    server = await start_server(tokens_file=token_file)
    for body, headers in device:
        assert (await post(server, body, headers, client_ssl, token=token)).status == 200
    body, headers = device[0]
    reply = await post(server, body, {**headers, "session-id": str(uuid.uuid4())}, client_ssl, token=reader)
    assert reply.status == 403 and "read token" in reply.json["error"]


async def test_a_revoked_token_is_refused_without_a_restart(start_server, token_file, device, client_ssl):
    body, headers = device[0]
    token, entry = tokens.add(token_file, serials=[headers["device-serial"]])
    server = await start_server(tokens_file=token_file)
    assert (await post(server, body, headers, client_ssl, token=token)).status == 200
    tokens.revoke(token_file, entry.id)
    with trio.fail_after(3):
        while True:
            reply = await post(server, body, {**headers, "session-id": str(uuid.uuid4())}, client_ssl, token=token)
            if reply.status == 401:
                break
            assert reply.status == 200
            await trio.sleep(0.2)
    # A token added meanwhile is taken the same way.
    fresh, _ = tokens.add(token_file, serials=[headers["device-serial"]])
    with trio.fail_after(3):
        while (await post(server, body, {**headers, "session-id": str(uuid.uuid4())}, client_ssl,
                          token=fresh)).status != 200:
            await trio.sleep(0.2)


async def test_status_metrics_and_feed_need_a_read_token(start_server, token_file, certs_dir, device, client_ssl):
    writer, _ = tokens.add(token_file, any_serial=True)
    reader, _ = tokens.add(token_file, read=True, label="dashboard")
    server = await start_server(tokens_file=token_file)
    for path in ("/status", "/metrics"):
        assert (await get(server, path, client_ssl)).status == 401
        assert (await get(server, path, client_ssl, token=writer)).status == 403
        assert (await get(server, path, client_ssl, token=reader)).status == 200
    assert (await get(server, "/healthz", client_ssl)).status == 200  # liveness probes need nothing
    assert await feed_status(server, client_ssl) == 401
    assert await feed_status(server, client_ssl, token=writer) == 403
    assert await feed_status(server, client_ssl, token=reader) == 200
    # The SDK's feed reader sends its token.
    for token, connects in ((reader, True), (writer, False)):
        source = LiveSource(server.url, StreamDataInterface, ca_file=str(certs_dir / certs.CA), token=token)
        source.start()
        assert await trio.to_thread.run_sync(source.wait_connected, 10)
        if connects:
            assert source.error is None
        else:
            await trio.to_thread.run_sync(source.join, 10)
            assert "403" in source.error
        await trio.to_thread.run_sync(source.stop, 5)


async def test_the_simulator_sends_its_token(start_server, token_file, client_ssl):
    fleet = make_fleet(1, seed=44, profile="mp_streaming_demo")
    token, _ = tokens.add(token_file, serials=[fleet[0].serial])
    server = await start_server(tokens_file=token_file)
    reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=0.4, batch_period_s=0.2,
                                        fast=True, timeout_s=10, token=token)
    assert reports[0].error is None and sender.succeeded(reports)
    fleet = make_fleet(1, seed=44, profile="mp_streaming_demo")
    reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=0.4, batch_period_s=0.2,
                                        fast=True, timeout_s=10)
    assert "401" in reports[0].error


async def test_tokens_and_client_certificates_are_both_required(start_server, token_file, certs_dir, device):
    body, headers = device[0]
    token, _ = tokens.add(token_file, any_serial=True)
    server = await start_server(tokens_file=token_file, verify_clients=True)
    with_cert = sender.client_ssl_context(str(certs_dir / certs.CA), True, str(certs_dir / certs.DEVICE),
                                          str(certs_dir / certs.DEVICE_KEY))
    assert await refused(server.url, sender.client_ssl_context(str(certs_dir / certs.CA)),
                         {**headers, **bearer(token)}, body)
    assert (await post(server, body, headers, with_cert)).status == 401
    assert (await post(server, body, headers, with_cert, token=token)).status == 200


def test_the_token_file_holds_no_token(token_file):
    token, entry = tokens.add(token_file, serials=["1M0YDA9HNM2419"], label="glasses")
    reader, _ = tokens.add(token_file, read=True)
    text = token_file.read_text()
    assert token not in text and reader not in text
    assert tokens.digest(token) in text
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert [t.id for t in tokens.read_file(token_file)][0] == entry.id  # adding kept the first


def test_tokens_added_at_once_are_all_kept(token_file):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: tokens.add(token_file, serials=[f"SERIAL{i}"])[1].id, range(16)))
    assert sorted(t.id for t in tokens.read_file(token_file)) == sorted(made)
    assert not [p for p in token_file.parent.iterdir() if p != token_file]  # no temporary file left


def test_the_tokens_commands(token_file):
    def run(*args, ok=True):
        done = subprocess.run([RECORDER, "tokens", *args, "--file", str(token_file)], capture_output=True,
                              text=True, timeout=60)
        assert (done.returncode == 0) == ok, (args, done.stdout, done.stderr)
        return done

    added = run("add", "--serial", "1M0YDA9HNM2419", "--label", "glasses 1")
    token = added.stdout.strip()
    assert len(token) >= 43 and "\n" not in token  # the token alone on stdout, once
    assert token not in added.stderr
    (entry,) = tokens.read_file(token_file)
    assert entry.sha256 == tokens.digest(token)
    run("add", "--read", "--label", "dashboard")
    listed = run("list").stdout
    assert token not in listed and entry.sha256 not in listed
    assert entry.id in listed and "glasses 1" in listed and "write 1M0YDA9HNM2419" in listed
    assert "dashboard" in listed and "read" in listed
    assert entry.id in run("revoke", entry.id).stdout
    assert entry.id not in run("list").stdout
    run("revoke", "dashboard")
    assert "no tokens" in run("list").stdout
    assert "no token" in run("revoke", "nope", ok=False).stderr
    assert "--serial" in run("add", ok=False).stderr  # a token that may do nothing is not made
    # A file that is not a token file is neither overwritten nor used.
    token_file.write_text("my notes\n")
    assert "not a token file" in run("add", "--read", ok=False).stderr
    assert token_file.read_text() == "my notes\n"


def test_serve_refuses_a_token_file_it_cannot_use(tmp_path, certs_dir):
    for content in (None, "{not json"):
        path = tmp_path / "tokens.json"
        if content is not None:
            path.write_text(content)
        done = subprocess.run([RECORDER, "serve", "--port", "0", "--rtmp-port", "0", "--certs-dir", str(certs_dir),
                               "--data-dir", str(tmp_path / "data"), "--tokens", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and str(path) in done.stderr, done


# -- TLS: what a scanner's defaults call weak is refused -------------------------------------


def weak_client(certs_dir, *, ciphers: str | None = None, version=None) -> ssl.SSLContext:
    context = sender.client_ssl_context(str(certs_dir / certs.CA))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 suites are not chosen by set_ciphers
        context.set_ciphers(ciphers)
    return context


@pytest.mark.parametrize("cipher", ["AES128-SHA", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA"])
async def test_weak_ciphers_are_refused(server, certs_dir, device, cipher, capsys):
    """RSA key exchange (AES128-SHA) cannot go with the development certificates' EC key anyway,
    and Python's defaults already leave out SHA-1 suites; CBC with SHA-256 is what the recorder's
    own cipher string takes away."""
    body, headers = device[0]
    try:
        context = weak_client(certs_dir, ciphers=f"{cipher}:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip(f"this OpenSSL cannot offer {cipher}")
    assert await refused(server.url, context, headers, body)
    assert "NO_SHARED_CIPHER" in capsys.readouterr().out  # the server refused it, not the client
    # The same client with a strong suite is served.
    context = weak_client(certs_dir, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert (await request(server.url, "GET", "/healthz", ssl_context=context)).status == 200


async def test_tls_before_1_2_is_refused_and_a_default_client_is_served(server, certs_dir, client_ssl, capsys):
    assert (await request(server.url, "GET", "/healthz", ssl_context=client_ssl)).status == 200
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = weak_client(certs_dir, version=ssl.TLSVersion.TLSv1_1)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        pytest.skip("this OpenSSL cannot build a TLS 1.1 client")
    errors = await refused(server.url, context, {}, b"")
    text = " ".join(repr(e) + repr(e.__cause__) for e in errors)
    if "NO_PROTOCOLS_AVAILABLE" in text or "no protocols available" in text:
        pytest.skip("this OpenSSL will not send a TLS 1.1 hello")
    assert "UNSUPPORTED_PROTOCOL" in capsys.readouterr().out  # the server refused the version

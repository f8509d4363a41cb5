"""Requests that reach the recorder the wrong way get an answer a person can act on: a GET of a
page that does not exist is a 404 naming the pages that do, and plain HTTP sent to the HTTPS
port is answered in plain HTTP with a 400 that says to use https (curl as the client)."""

from __future__ import annotations

import trio
from server_support import assert_json_error, get, request

from recorder import certs

CURL = "/usr/bin/curl"


async def curl(*args: str) -> tuple[int, str, str]:
    """curl's exit code, the HTTP status it printed last, and the response (head and body)."""
    result = await trio.run_process([CURL, "--silent", "--show-error", "--max-time", "20", "--include",
                                     "--write-out", "\n%{http_code}", *args],
                                    capture_stdout=True, capture_stderr=True, check=False)
    text, _, code = result.stdout.decode(errors="replace").rpartition("\n")
    return result.returncode, code, text + result.stderr.decode(errors="replace")


async def test_get_of_an_unknown_page_is_404_naming_the_pages_there_are(server, client_ssl):
    for path in ("/", "/status/", "/some/ingest/path", "/index.html?x=1"):
        payload = assert_json_error(await get(server.url, path, client_ssl), 404,
                                    "no such page", "/status", "/metrics", "/healthz", "POST")
        assert payload["paths"] == ["/status", "/metrics", "/healthz"]
    head = await request(server.url, "HEAD", "/nothing-here", ssl_context=client_ssl)
    assert head.status == 404 and head.body == b""
    # Other methods than GET and POST are still told that devices POST.
    assert_json_error(await request(server.url, "DELETE", "/", ssl_context=client_ssl), 405, "POST", "DELETE")
    assert (await get(server.url, "/healthz", client_ssl)).status == 200


async def test_plain_http_to_the_https_port_gets_a_plain_400_saying_use_https(server, certs_dir, capsys, tmp_path):
    plain_url = server.url.replace("https://", "http://")
    exit_code, status, response = await curl(f"{plain_url}/status")
    assert exit_code == 0, response
    assert status == "400", response
    assert response.startswith("HTTP/1.1 400 Bad Request"), response
    assert "text/plain" in response.lower()
    assert "HTTPS port" in response and "https://" in response
    # A POST of a body over plain HTTP gets the same answer (its body is read away, not reset).
    body = tmp_path / "body"
    await trio.Path(body).write_bytes(b"x" * 200_000)
    exit_code, status, response = await curl("--data-binary", f"@{body}", "-H", "device-serial: PLAIN1",
                                             f"{plain_url}/")
    assert (exit_code, status) == (0, "400"), response
    assert "https://" in response
    assert "plain HTTP sent to the HTTPS port" in capsys.readouterr().out
    # The port still speaks TLS to those who do.
    exit_code, status, response = await curl("--cacert", str(certs_dir / certs.CA), f"{server.url}/healthz")
    assert (exit_code, status) == (0, "200"), response
    assert not list(server.data_dir.iterdir())


async def test_a_client_that_says_nothing_on_the_https_port_is_closed_after_the_header_timeout(start_server, capsys):
    server = await start_server(header_timeout_s=1.0)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    start = trio.current_time()
    with trio.fail_after(10):
        assert await stream.receive_some(100) == b""  # closed by the server, nothing said
    waited = trio.current_time() - start
    assert 0.9 <= waited < 1.8, waited
    await stream.aclose()
    assert "no TLS handshake within 1 s" in capsys.readouterr().out

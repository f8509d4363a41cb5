"""Client certificates: with verify_clients the server takes devices whose certificate root_ca.pem
signed, and refuses at TLS a device with no certificate or one from another CA."""

from __future__ import annotations

import ssl
import uuid

import pytest
import trio
from server_support import request

from recorder import certs
from recorder.sim import sender
from recorder.sim.fleet import make_fleet

REFUSALS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, ConnectionError, OSError)


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


async def refused(url: str, context: ssl.SSLContext, headers: dict, body: bytes) -> list[BaseException]:
    """The request fails at TLS (no HTTP answer at all); returns what the client saw."""
    try:
        reply = await request(url, headers=headers, body=body, ssl_context=context)
    except BaseException as exc:  # noqa: BLE001 - sorted out below
        errors = leaves(exc)
        if not all(isinstance(e, REFUSALS) for e in errors):
            raise
        return errors
    raise AssertionError(f"the server answered {reply.status} {reply.body[:200]!r} instead of refusing the device")


def device_context(ca_folder, cert_folder=None) -> ssl.SSLContext:
    cert = str(cert_folder / certs.DEVICE) if cert_folder else None
    key = str(cert_folder / certs.DEVICE_KEY) if cert_folder else None
    return sender.client_ssl_context(str(ca_folder / certs.CA), True, cert, key)


@pytest.fixture
def body_and_headers():
    device = make_fleet(1, seed=41, profile="mp_streaming_demo")[0]
    return device.window(0.0, 0.2), device.headers()


async def test_verify_clients_takes_a_device_certificate_signed_by_the_ca(start_server, certs_dir, body_and_headers):
    server = await start_server(verify_clients=True)
    body, headers = body_and_headers
    reply = await request(server.url, headers=headers, body=body, ssl_context=device_context(certs_dir, certs_dir))
    assert reply.status == 200 and reply.json["status"] == "ok"
    assert reply.json["records"] > 0
    assert (server.session_path(headers["device-serial"], headers["session-id"]) / "session.json").exists()


async def test_verify_clients_refuses_a_device_without_a_certificate(start_server, certs_dir, body_and_headers, capsys):
    server = await start_server(verify_clients=True)
    body, headers = body_and_headers
    assert await refused(server.url, device_context(certs_dir), headers, body)
    assert not any(server.data_dir.iterdir()), "a refused device must leave no session behind"
    # The operator sees why.
    assert "refused a TLS connection from 127.0.0.1" in capsys.readouterr().out
    # The server goes on: a device with a certificate is taken right after.
    reply = await request(server.url, headers=headers, body=body, ssl_context=device_context(certs_dir, certs_dir))
    assert reply.status == 200


async def test_verify_clients_refuses_a_certificate_from_another_ca(start_server, certs_dir, other_certs_dir,
                                                                   body_and_headers, capsys):
    server = await start_server(verify_clients=True)
    body, headers = body_and_headers
    assert await refused(server.url, device_context(certs_dir, other_certs_dir), headers, body)
    assert not any(server.data_dir.iterdir())
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().out
    reply = await request(server.url, headers=headers, body=body, ssl_context=device_context(certs_dir, certs_dir))
    assert reply.status == 200


async def test_a_device_trusting_another_ca_does_not_talk_to_the_server(server, other_certs_dir, body_and_headers):
    body, headers = body_and_headers
    errors = await refused(server.url, device_context(other_certs_dir), headers, body)
    assert any("CERTIFICATE_VERIFY_FAILED" in repr(e) or "certificate verify failed" in repr(e.__cause__)
               for e in errors), errors
    assert not any(server.data_dir.iterdir())


async def test_without_verify_clients_a_device_needs_no_certificate(server, client_ssl, body_and_headers):
    body, headers = body_and_headers
    reply = await request(server.url, headers={**headers, "session-id": str(uuid.uuid4())}, body=body,
                          ssl_context=client_ssl)
    assert reply.status == 200

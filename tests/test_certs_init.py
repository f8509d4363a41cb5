"""`recorder certs init` never overwrites a certificate or key: it uses what it finds, creates what
is missing only when it holds the CA's key to sign with, and says what it left alone and why."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from recorder import certs
from recorder.cli import main

VENDOR_LAYOUT = (certs.CA, certs.SERVER, certs.SERVER_KEY)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    """A complete set made elsewhere, standing in for certificates a user already has."""
    folder = tmp_path_factory.mktemp("existing")
    certs.init(folder)
    return folder


def copy(source: Path, folder: Path, names) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / name, folder / name)
    return contents(folder)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def certs_init(folder: Path):
    return CliRunner().invoke(main, ["certs", "init", "--dir", str(folder)])


def signed_by(cert_path: Path, ca_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, InvalidSignature):
        return False
    return True


def test_an_empty_folder_gets_everything_and_a_second_run_changes_nothing(tmp_path):
    folder = tmp_path / "certs"
    result = certs_init(folder)
    assert result.exit_code == 0, result.output
    assert sorted(contents(folder)) == sorted(certs.ALL_FILES)
    assert "created" in result.output and "has what it needs" in result.output
    for name in (certs.SERVER, certs.DEVICE):
        assert signed_by(folder / name, folder / certs.CA)
    assert (folder / certs.CA_KEY).stat().st_mode & 0o077 == 0

    before = contents(folder)
    again = certs_init(folder)
    assert again.exit_code == 0, again.output
    assert contents(folder) == before
    assert "created" not in again.output and "not touched" in again.output


def test_the_vendor_layout_is_kept_byte_for_byte_and_serve_can_use_it(tmp_path, other_ca):
    folder = tmp_path / "persistent"
    before = copy(other_ca, folder, VENDOR_LAYOUT)

    result = certs_init(folder)

    assert result.exit_code == 0, result.output
    assert contents(folder) == before  # nothing replaced, nothing added
    kept = next(line for line in result.output.splitlines() if line.strip().startswith("kept"))
    assert all(name in kept for name in VENDOR_LAYOUT) and "not touched" in kept
    assert f"{certs.DEVICE}, {certs.DEVICE_KEY}: not created, signing needs the CA's key {certs.CA_KEY}" \
        in result.output
    assert f"`recorder serve --certs-dir {folder}` has what it needs" in result.output
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # what serve loads
    context.load_cert_chain(folder / certs.SERVER, folder / certs.SERVER_KEY)
    context.load_verify_locations(cafile=str(folder / certs.CA))


def test_with_the_ca_key_only_the_missing_files_are_created(tmp_path, other_ca):
    folder = tmp_path / "partial"
    before = copy(other_ca, folder, (certs.CA, certs.CA_KEY, certs.SERVER, certs.SERVER_KEY))

    result = certs_init(folder)

    assert result.exit_code == 0, result.output
    after = contents(folder)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == sorted((certs.DEVICE, certs.DEVICE_KEY))
    assert signed_by(folder / certs.DEVICE, folder / certs.CA)
    assert f"created  {certs.DEVICE}, {certs.DEVICE_KEY}" in result.output


def test_a_missing_server_certificate_is_signed_by_the_ca_found(tmp_path, other_ca):
    folder = tmp_path / "ca-only"
    before = copy(other_ca, folder, (certs.CA, certs.CA_KEY))

    result = certs_init(folder)

    assert result.exit_code == 0, result.output
    assert {name: contents(folder)[name] for name in before} == before
    assert signed_by(folder / certs.SERVER, folder / certs.CA)
    assert signed_by(folder / certs.DEVICE, folder / certs.CA)


def test_a_server_certificate_without_the_ca_key_is_not_touched(tmp_path, other_ca):
    folder = tmp_path / "server-only"
    before = copy(other_ca, folder, (certs.SERVER,))

    result = certs_init(folder)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert contents(folder) == before
    assert (f"{certs.SERVER_KEY}: not created, {certs.SERVER} is here without it, "
            f"and a new pair would replace {certs.SERVER}") in result.output
    assert f"{certs.CA}, {certs.CA_KEY}: not created, a new CA would not be the one that signed" in result.output
    assert f"`recorder serve` needs {certs.SERVER_KEY} in {folder}" in result.output


def test_a_server_pair_without_any_ca_is_used_as_it_is(tmp_path, other_ca):
    folder = tmp_path / "server-pair"
    before = copy(other_ca, folder, (certs.SERVER, certs.SERVER_KEY))

    result = certs_init(folder)

    assert result.exit_code == 0, result.output
    assert contents(folder) == before
    assert "a new CA would not be the one that signed" in result.output
    assert "has what it needs" in result.output


def test_a_ca_key_that_does_not_match_the_ca_signs_nothing(tmp_path, other_ca):
    folder = tmp_path / "mismatch"
    folder.mkdir()
    certs.init(tmp_path / "unrelated")
    shutil.copy2(other_ca / certs.CA, folder / certs.CA)
    shutil.copy2(tmp_path / "unrelated" / certs.CA_KEY, folder / certs.CA_KEY)
    before = contents(folder)

    result = certs_init(folder)

    assert result.exit_code == 1
    assert contents(folder) == before
    assert f"{certs.CA_KEY} is not the key of {certs.CA}" in result.output


def strict_handshake(folder: Path) -> tuple[bytes, dict]:
    """A real mutual-TLS handshake on 127.0.0.1 with the folder's server and device
    certificates, each side verifying the other strictly; what the device read, and what the
    server saw (the device's subject, or its error)."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=folder / certs.CA)
    server_context.load_cert_chain(folder / certs.SERVER, folder / certs.SERVER_KEY)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=folder / certs.CA)
    client_context.load_cert_chain(folder / certs.DEVICE, folder / certs.DEVICE_KEY)
    for context in (server_context, client_context):
        context.verify_flags |= ssl.VERIFY_X509_STRICT

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        seen = {}

        def serve():
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    seen["device"] = tls.getpeercert()["subject"]
                    tls.sendall(b"ok")
            except ssl.SSLError as exc:
                seen["server error"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with client_context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                            server_hostname="localhost") as tls:
                answer = tls.recv(2)
        finally:
            thread.join(10)
    return answer, seen


def test_the_certificates_made_pass_strict_verification_both_ways(tmp_path):
    """Python 3.13's default client context verifies strictly (VERIFY_X509_STRICT), as OpenSSL
    does when asked: a certificate without key identifiers is then refused ("Missing Authority
    Key Identifier")."""
    folder = tmp_path / "certs"
    certs.init(folder)
    answer, seen = strict_handshake(folder)
    assert answer == b"ok" and "server error" not in seen
    assert (("commonName", "recorder development device"),) in seen["device"]


def test_certificates_signed_by_a_ca_found_name_it_by_its_own_key_identifier(tmp_path):
    """A CA made elsewhere may carry a Subject Key Identifier that is not the hash of its key:
    the certificates init signs with it must name that one, or a strict verifier refuses them."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path / "certs"
    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a CA made elsewhere")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier(b"made elsewhere"), critical=False)
          .sign(key, hashes.SHA256()))
    (folder / certs.CA).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / certs.CA_KEY).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    report = certs.init(folder)
    assert sorted(report.written) == sorted([certs.SERVER, certs.SERVER_KEY, certs.DEVICE, certs.DEVICE_KEY])
    assert not report.strictly_refused
    answer, seen = strict_handshake(folder)
    assert answer == b"ok" and "server error" not in seen


def without_key_identifiers(folder: Path) -> Path:
    """A CA and server pair as `certs init` made them before they carried key identifiers."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)

    def make(subject: str, key, issuer: str, signer, ca: bool) -> bytes:
        name = lambda n: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n)])  # noqa: E731
        cert = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                .sign(signer, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (folder / certs.CA).write_bytes(make("old CA", ca_key, "old CA", ca_key, True))
    (folder / certs.SERVER).write_bytes(make("localhost", server_key, "old CA", ca_key, False))
    (folder / certs.SERVER_KEY).write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder


def test_certificates_kept_that_strict_clients_refuse_are_named_and_left_as_they_are(tmp_path):
    folder = without_key_identifiers(tmp_path / "old")
    before = contents(folder)
    result = certs_init(folder)
    assert result.exit_code == 0, result.output
    assert contents(folder) == before
    assert f"{certs.CA} has no Subject Key Identifier" in result.output
    assert f"{certs.SERVER} has no Authority Key Identifier" in result.output
    assert "Python 3.13" in result.output

    fresh = certs_init(tmp_path / "new")
    assert fresh.exit_code == 0 and "has no" not in fresh.output

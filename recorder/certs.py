"""Development certificates laid out like the vendor's streaming certificates.

    <folder>/root_ca.pem, root_ca-key.pem        a private CA
    <folder>/subscriber.pem, subscriber-key.pem  the recorder's server certificate, signed by it
    <folder>/device.pem, device-key.pem          a device (client) certificate, signed by it

`init` creates whatever is missing and never overwrites what is there, so real certificates
copied into the folder are kept.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_FOLDER = Path("~/.aria/streaming-certs/persistent").expanduser()
VALID_DAYS = 3650
CA, CA_KEY = "root_ca.pem", "root_ca-key.pem"
SERVER, SERVER_KEY = "subscriber.pem", "subscriber-key.pem"
DEVICE, DEVICE_KEY = "device.pem", "device-key.pem"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: str, issuer: x509.Name | None, public_key) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "recorder development")])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def _server_names(extra: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in ["localhost", socket.gethostname(), "127.0.0.1", "::1", *extra]:
        try:
            entry = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in names:
            names.append(entry)
    return names


def init(folder: Path = DEFAULT_FOLDER, hostnames: list[str] | None = None) -> list[Path]:
    """Create the CA, server and device certificates that are missing; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not (folder / CA).exists() or not (folder / CA_KEY).exists():
        ca_key = _key()
        ca = (_builder("recorder development CA", None, ca_key.public_key())
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_key(folder / CA_KEY, ca_key)
        _write_cert(folder / CA, ca)
        written += [folder / CA, folder / CA_KEY]
        # A new CA invalidates certificates signed by an old one.
        for stale in (SERVER, SERVER_KEY, DEVICE, DEVICE_KEY):
            (folder / stale).unlink(missing_ok=True)
    ca = x509.load_pem_x509_certificate((folder / CA).read_bytes())
    ca_key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)

    def issue(cert_name, key_name, subject, usage, names=None):
        if (folder / cert_name).exists() and (folder / key_name).exists():
            return
        key = _key()
        builder = (_builder(subject, ca.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write_key(folder / key_name, key)
        _write_cert(folder / cert_name, builder.sign(ca_key, hashes.SHA256()))
        written.extend([folder / cert_name, folder / key_name])

    issue(SERVER, SERVER_KEY, "recorder", ExtendedKeyUsageOID.SERVER_AUTH, _server_names(hostnames or []))
    issue(DEVICE, DEVICE_KEY, "recorder development device", ExtendedKeyUsageOID.CLIENT_AUTH)
    return written

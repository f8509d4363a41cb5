"""Development certificates laid out like the vendor's streaming certificates.

    <folder>/root_ca.pem, root_ca-key.pem        a private CA
    <folder>/subscriber.pem, subscriber-key.pem  the recorder's server certificate, signed by it
    <folder>/device.pem, device-key.pem          a device (client) certificate, signed by it

`init` never overwrites, replaces or deletes a file. In a folder holding none of these it creates
them all. Otherwise it keeps what it finds and creates a missing certificate and its key only
when it can sign them: when root_ca.pem and its key root_ca-key.pem are both there. The vendor's
SDK leaves root_ca.pem, subscriber.pem and subscriber-key.pem (no CA key): those are used as
they are, and nothing is added.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass, field
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
ALL_FILES = (CA, CA_KEY, SERVER, SERVER_KEY, DEVICE, DEVICE_KEY)
# What `recorder serve` loads (the CA only with --verify-clients).
SERVE_NEEDS = (SERVER, SERVER_KEY)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _create(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: a file that appeared since the folder was looked at is still never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_key(path: Path, key) -> None:
    _create(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()), 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _create(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


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


@dataclass
class InitReport:
    """What `init` found, wrote, and left missing (file name: why it was not created)."""

    folder: Path
    found: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    not_created: dict[str, str] = field(default_factory=dict)
    # Certificates found that clients verifying strictly refuse (file name: the key identifier it lacks).
    strictly_refused: dict[str, str] = field(default_factory=dict)

    @property
    def serve_ready(self) -> bool:
        """Whether the folder now holds what `recorder serve` needs for TLS."""
        return all((self.folder / name).exists() for name in SERVE_NEEDS)


def _lacking_identifier(path: Path, ca: bool) -> str | None:
    """The key identifier a certificate lacks that strict verification requires (a CA's own,
    any other's of its issuer), or None; None too for a file that is not a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return None
    wanted = x509.SubjectKeyIdentifier if ca else x509.AuthorityKeyIdentifier
    try:
        cert.extensions.get_extension_for_class(wanted)
    except x509.ExtensionNotFound:
        return "Subject Key Identifier" if ca else "Authority Key Identifier"
    return None


def _authority_key_identifier(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """What names `ca` in the certificates it signs: its own Subject Key Identifier when it has
    one (a CA made elsewhere may have computed it otherwise than from its key, and a verifier
    refuses a certificate whose authority identifier does not match its issuer's), else one
    computed from its key."""
    try:
        own = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(own)


def _signing_ca(folder: Path) -> tuple[x509.Certificate | None, object, str]:
    """The CA certificate and key to sign with, or (None, None, why not)."""
    if not (folder / CA_KEY).exists():
        return None, None, f"signing needs the CA's key {CA_KEY}, which is not here"
    if not (folder / CA).exists():
        return None, None, f"{CA_KEY} is here but {CA} is not, so nothing signed with it could be verified"
    try:
        ca = x509.load_pem_x509_certificate((folder / CA).read_bytes())
    except ValueError:
        return None, None, f"{CA} is not a PEM certificate"
    try:
        ca_key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
    except (ValueError, TypeError) as exc:
        return None, None, f"{CA_KEY} cannot be read without help ({exc})"
    if ca_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return None, None, f"{CA_KEY} is not the key of {CA}"
    return ca, ca_key, ""


def _new_ca(folder: Path) -> None:
    ca_key = _key()
    ca = (_builder("recorder development CA", None, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          # Key identifiers: strict verification (Python 3.13's default client context) refuses
          # a chain without them, "Missing Authority Key Identifier".
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    _write_key(folder / CA_KEY, ca_key)
    _write_cert(folder / CA, ca)


def init(folder: Path = DEFAULT_FOLDER, hostnames: list[str] | None = None) -> InitReport:
    """Create what is missing of the CA, server and device certificates, where that needs no
    existing file replaced; report what was found, written and left missing."""
    folder.mkdir(parents=True, exist_ok=True)
    report = InitReport(folder, found=[name for name in ALL_FILES if (folder / name).exists()])
    if not report.found:
        _new_ca(folder)
        report.written += [CA, CA_KEY]
    ca, ca_key, cannot_sign = _signing_ca(folder)
    if CA not in report.found + report.written and CA_KEY not in report.found:
        report.not_created[CA] = report.not_created[CA_KEY] = \
            "a new CA would not be the one that signed the certificates already here"
    elif CA not in report.found + report.written:
        report.not_created[CA] = cannot_sign
    elif CA_KEY not in report.found + report.written:
        report.not_created[CA_KEY] = f"only whoever made {CA} has its key"

    def issue(cert_name, key_name, subject, usage, names=None):
        have_cert, have_key = (folder / cert_name).exists(), (folder / key_name).exists()
        if have_cert and have_key:
            return
        if have_cert or have_key:
            present, absent = (cert_name, key_name) if have_cert else (key_name, cert_name)
            report.not_created[absent] = f"{present} is here without it, and a new pair would replace {present}"
            return
        if ca is None:
            report.not_created[cert_name] = report.not_created[key_name] = cannot_sign
            return
        key = _key()
        builder = (_builder(subject, ca.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(_authority_key_identifier(ca), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write_key(folder / key_name, key)
        _write_cert(folder / cert_name, builder.sign(ca_key, hashes.SHA256()))
        report.written += [cert_name, key_name]

    issue(SERVER, SERVER_KEY, "recorder", ExtendedKeyUsageOID.SERVER_AUTH, _server_names(hostnames or []))
    issue(DEVICE, DEVICE_KEY, "recorder development device", ExtendedKeyUsageOID.CLIENT_AUTH)
    for name in (CA, SERVER, DEVICE):
        if name in report.found and (lacking := _lacking_identifier(folder / name, ca=name == CA)):
            report.strictly_refused[name] = lacking
    return report

"""Test TLS material and provider credentials for the APNs / FCM emulators.

Everything here is generated fresh per stack (nothing secret is checked in): a throw-away CA, a
server certificate for ``127.0.0.1`` / ``localhost`` signed by it, an APNs ES256 signing key and an
FCM service-account file. Strict clients trust the emulators by loading ``ca.pem``
(``PUSHLINE_CA_FILE``), exactly as they would trust a private CA in production.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ApnsCredentials",
    "FcmCredentials",
    "TlsMaterial",
    "generate_apns_credentials",
    "generate_fcm_credentials",
    "generate_tls",
]

_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files: the CA clients trust, and the server chain + key the emulators serve."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ApnsCredentials:
    """An APNs token-auth key as Apple hands it out (.p8, PKCS#8 PEM) plus its ids."""

    key_file: Path
    key_id: str
    team_id: str
    topic: str
    public_key_pem: str


@dataclass(frozen=True)
class FcmCredentials:
    """A Google service-account JSON file and the public half the token endpoint verifies with."""

    service_account_file: Path
    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    public_key_pem: str


def _write_private(path: Path, data: bytes) -> None:
    # Keys are test keys, but a world-readable private key is still a bad habit to model.
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _random_id(length: int = 10) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def generate_tls(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsMaterial:
    """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` (PKCS#8) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    # A little backdating absorbs clock skew between the generating and the verifying process.
    not_before = now - dt.timedelta(hours=1)
    not_after = now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pushline emulator test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_file,
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,  # granian only reads PKCS#8 keys
            serialization.NoEncryption(),
        ),
    )
    return TlsMaterial(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def generate_apns_credentials(
    directory: Path, topic: str = "com.example.pushline", key_id: str | None = None
) -> ApnsCredentials:
    """An ES256 (P-256) key written as ``AuthKey_<kid>.p8``, the name Apple's download uses."""
    directory.mkdir(parents=True, exist_ok=True)
    key_id = key_id or _random_id()
    team_id = _random_id()
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = directory / f"AuthKey_{key_id}.p8"
    _write_private(
        key_file,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ApnsCredentials(
        key_file=key_file,
        key_id=key_id,
        team_id=team_id,
        topic=topic,
        public_key_pem=public_pem.decode("ascii"),
    )


def generate_fcm_credentials(
    directory: Path, token_uri: str, project_id: str = "pushline-test"
) -> FcmCredentials:
    """A service-account JSON in Google's layout whose ``token_uri`` points at the emulator."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_key_id = secrets.token_hex(20)
    client_email = f"pushline-sender@{project_id}.iam.gserviceaccount.com"
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    document = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id,
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path = directory / "fcm-service-account.json"
    _write_private(path, json.dumps(document, indent=2).encode("utf-8"))
    return FcmCredentials(
        service_account_file=path,
        project_id=project_id,
        client_email=client_email,
        private_key_id=private_key_id,
        token_uri=token_uri,
        public_key_pem=public_pem,
    )

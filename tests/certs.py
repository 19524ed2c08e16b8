"""Throwaway certificates for the TLS tests: a CA, a server and a client certificate it signed,
and an unrelated CA that trusts neither. EC keys: quick to make, and every server here takes
them."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_KEY = ec.SECP256R1()


@dataclass(frozen=True)
class CertFiles:
    ca: Path  # the CA that signed server and client
    server_cert: Path  # for 127.0.0.1, ::1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path
    client_pem: Path  # certificate then key in one file, as pymongo wants it
    other_ca: Path  # an unrelated CA: trusting it instead of `ca` must fail


def make_certs(directory: Path) -> CertFiles:
    """Write a fresh set of certificates and keys into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("GDTS test CA")
    _, other_cert = _ca("GDTS unrelated CA")
    server_key, server_cert = _leaf(
        ca_key,
        ca_cert,
        "localhost",
        # etcd's gRPC gateway dials etcd itself with the server certificate, so with client
        # certificate auth on, that certificate must be good for client auth too.
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client_key, client_cert = _leaf(
        ca_key, ca_cert, "gdts-client", [ExtendedKeyUsageOID.CLIENT_AUTH], []
    )
    paths = CertFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        client_pem=directory / "client-both.pem",
        other_ca=directory / "other-ca.pem",
    )
    paths.ca.write_bytes(_cert_pem(ca_cert))
    paths.other_ca.write_bytes(_cert_pem(other_cert))
    for cert, key, cert_path, key_path in (
        (server_cert, server_key, paths.server_cert, paths.server_key),
        (client_cert, client_key, paths.client_cert, paths.client_key),
    ):
        cert_path.write_bytes(_cert_pem(cert))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
    paths.client_pem.write_bytes(_cert_pem(client_cert) + _key_pem(client_key))
    paths.client_pem.chmod(0o600)
    return paths


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(_KEY)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(_KEY)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A little in the past: a server whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

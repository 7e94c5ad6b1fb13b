"""
Development certificates, made with C{cryptography} (no openssl shell-out).

Equivalent to the tls-json README's openssl commands, except that the
subjectAltName is always set (hostname verification needs it) and the key
is ECDSA P-256 unless RSA 2048 is asked for (L{DEFAULT_KEY_TYPE}).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

#: About ten years, as the tls-json README's dev certificate.
DEFAULT_DAYS = 3650

#: The key type of new keys: ECDSA P-256, whose handshakes cost a server
#: about a third less CPU than RSA 2048's (a signature of 21 us against
#: 363; C{benchmarks/RESULTS.rst}, fifth pass).  C{"rsa"} (2048 bits) is
#: there for peers that cannot use ECDSA.
DEFAULT_KEY_TYPE = "ecdsa"


def _generalName(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def generateKey(keyType: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """
    @param keyType: C{"ecdsa"} (P-256, the default) or C{"rsa"} (2048
        bits).
    @raise ValueError: for another key type.
    """
    if keyType == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if keyType == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type must be 'rsa' or 'ecdsa', not {keyType!r}")


def makeCertificate(
    commonName: str,
    subjectAltNames: Optional[Sequence[str]] = None,
    *,
    keyType: str = DEFAULT_KEY_TYPE,
    days: int = DEFAULT_DAYS,
    issuer: Optional[Tuple[x509.Certificate, PrivateKey]] = None,
    isCA: bool = False,
    clientAuth: bool = False,
) -> Tuple[PrivateKey, x509.Certificate]:
    """
    Make a key and a SHA-256 certificate for it.

    @param commonName: the subject CN.
    @param subjectAltNames: DNS names and IP addresses; by default
        C{[commonName]}.  An empty sequence makes a certificate with no
        subjectAltName (which verifying clients refuse; for tests).
    @param keyType: as L{generateKey}'s.
    @param issuer: the CA certificate and key that sign it; self-signed by
        default.
    @param isCA: make a CA certificate.
    @param clientAuth: mark it for client authentication (mutual TLS) too.
    @return: the private key and the certificate.
    """
    key = generateKey(keyType)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    now = datetime.datetime.now(datetime.timezone.utc)
    issuerName, signingKey = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=isCA, path_length=None), critical=True)
    )
    names = [commonName] if subjectAltNames is None else list(subjectAltNames)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_generalName(n) for n in names]), critical=False)
    if not isCA:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if clientAuth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return key, builder.sign(signingKey, hashes.SHA256())


def keyPEM(key: PrivateKey) -> bytes:
    """
    @return: C{key} as unencrypted PKCS#8 PEM.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificatePEM(certificate: x509.Certificate) -> bytes:
    """
    @return: C{certificate} as PEM.
    """
    return certificate.public_bytes(serialization.Encoding.PEM)


def writeKeyPair(
    directory: Union[str, Path],
    name: str,
    key: PrivateKey,
    certificate: x509.Certificate,
    force: bool = False,
) -> Tuple[Path, Path]:
    """
    Write C{NAME.key} (mode 0600) and C{NAME.crt} into C{directory}.

    @param force: overwrite existing files; otherwise refuse.
    @return: the key path and the certificate path.
    @raise FileExistsError: if a file exists and C{force} is not set.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keyPath, certPath = directory / f"{name}.key", directory / f"{name}.crt"
    if not force:
        for path in (keyPath, certPath):
            if path.exists():
                raise FileExistsError(f"{path} exists; use --force to overwrite it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(keyPath, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(keyPEM(key))
    os.chmod(keyPath, 0o600)
    certPath.write_bytes(certificatePEM(certificate))
    return keyPath, certPath

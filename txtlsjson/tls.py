"""
TLS settings for both sides: TLS 1.2 at least, certificates from PEM files,
and a client that verifies the server's name and fails closed.

Twisted's C{optionsForClientTLS} only logs a certificate that has no
subjectAltName (service_identity raises C{CertificateError} for it, which is
not the C{VerificationError} Twisted checks for) and lets the handshake
succeed for any hostname.  The tls-json README's openssl commands make exactly
such certificates.  L{StrictClientTLSOptions} refuses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError as NoSubjectAltName
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    CertificateOptions,
    TLSVersion,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.internet.ssl import Certificate as TwistedCertificate
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from txtlsjson.errors import CertificateNameError, TLSConfigurationError

PathLike = Union[str, Path]


def _idnaBytes(hostname: str) -> bytes:
    try:
        import idna
    except ImportError:  # service_identity works without it for ASCII names
        return hostname.encode("idna")
    return idna.encode(hostname)

#: The oldest protocol version either side accepts.
MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2


def _read(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSConfigurationError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


def loadCertificates(path: PathLike) -> List[x509.Certificate]:
    """
    Load every certificate in a PEM file.

    @raise TLSConfigurationError: if the file cannot be read or holds no
        valid PEM certificate.
    """
    data = _read(path, "certificate file")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigurationError(f"{str(path)!r} holds no valid PEM certificate") from None
    return certificates


def loadPrivateKey(path: PathLike) -> PrivateKeyTypes:
    """
    Load an unencrypted PEM private key.

    @raise TLSConfigurationError: if the file cannot be read or is not an
        unencrypted PEM private key.
    """
    data = _read(path, "private key file")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigurationError(
            f"{str(path)!r} is not an unencrypted PEM private key ({e})") from None
    return key


def _trustRoot(caFiles: Iterable[PathLike]) -> Any:
    # An IOpenSSLTrustRoot, which Twisted does not export for hints.
    certificates = [TwistedCertificate(X509.from_cryptography(c))
                    for path in caFiles for c in loadCertificates(path)]
    return trustRootFromCertificates(certificates)


def serverTLSOptions(
    certificate: PathLike,
    privateKey: PathLike,
    chain: Sequence[PathLike] = (),
    clientCA: Optional[Sequence[PathLike]] = None,
) -> CertificateOptions:
    """
    TLS settings for a server, from PEM files.

    @param certificate: the server certificate; further certificates in the
        same file are sent as its chain.
    @param privateKey: its unencrypted private key.
    @param chain: files of intermediate certificates to send as well.
    @param clientCA: for mutual TLS, files of the CA certificates that client
        certificates must chain to; clients without one are refused.
    @raise TLSConfigurationError: if a file is missing, unreadable, invalid,
        or the key does not belong to the certificate.
    """
    leaf, *extra = loadCertificates(certificate)
    for path in chain:
        extra.extend(loadCertificates(path))
    key = loadPrivateKey(privateKey)
    # Twisted's hints still name pyOpenSSL's X509/PKey, which pyOpenSSL
    # (since 24.3) deprecates in favour of the cryptography objects passed
    # here: the options go as Any.
    options: Dict[str, Any] = dict(privateKey=key, certificate=leaf, extraCertChain=extra)
    if clientCA:
        options.update(
            verify=True,
            requireCertificate=True,
            caCerts=[X509.from_cryptography(c) for path in clientCA for c in loadCertificates(path)],
        )
    try:
        result = CertificateOptions(raiseMinimumTo=MINIMUM_TLS_VERSION, **options)
        result.getContext()
    except SSL.Error as e:
        raise TLSConfigurationError(
            f"private key {str(privateKey)!r} does not match certificate "
            f"{str(certificate)!r} ({e})") from None
    return result


@implementer(IOpenSSLClientConnectionCreator)
class StrictClientTLSOptions:
    """
    A client connection creator that verifies the server's certificate chain
    and that its subjectAltName names the host dialled, refusing the
    connection otherwise -- including for a certificate with no
    subjectAltName at all.
    """

    def __init__(self, hostname: str, options: CertificateOptions) -> None:
        """
        @param hostname: the DNS name or IP address the certificate must name.
        @param options: the rest of the TLS settings (trust root, client
            certificate, versions).
        """
        self._hostname = hostname
        self._options = options
        self._serviceID: ServiceID
        if isIPAddress(hostname) or isIPv6Address(hostname):
            self._serverName: Optional[bytes] = None
            self._serviceID = IPAddress_ID(hostname)
        else:
            self._serverName = _idnaBytes(hostname)
            self._serviceID = DNS_ID(hostname)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        Create the OpenSSL connection for one TLS client connection.
        """
        connection = SSL.Connection(self._options.getContext(), None)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            self._verifyCallback(tlsProtocol),
        )
        return connection

    def _verifyCallback(self, tlsProtocol: TLSMemoryBIOProtocol
                        ) -> Callable[[SSL.Connection, X509, int, int, int], bool]:
        hostname = self._hostname
        serviceID = self._serviceID

        def verify(connection: SSL.Connection, cert: X509, err: int, depth: int, ok: int) -> bool:
            if depth != 0 or not ok:
                return bool(ok)
            try:
                verify_service_identity(extract_patterns(cert), [serviceID], [])
            except NoSubjectAltName:
                error = CertificateNameError(
                    f"the server certificate has no subjectAltName, so it cannot be "
                    f"verified for {hostname!r}; reissue it with "
                    f"subjectAltName=DNS:{hostname} (for example: tlsjson certs --cn {hostname})")
            except VerificationError as e:
                error = CertificateNameError(
                    f"the server certificate does not match {hostname!r}: {e}")
            except Exception as e:  # an OpenSSL callback must not raise
                error = CertificateNameError(f"cannot verify the server certificate: {e!r}")
            else:
                return True
            tlsProtocol.failVerification(Failure(error))
            return False

        return verify


def clientTLSOptions(
    hostname: str,
    ca: Optional[Sequence[PathLike]] = None,
    clientCertificate: Optional[PathLike] = None,
    clientKey: Optional[PathLike] = None,
) -> StrictClientTLSOptions:
    """
    TLS settings for a client that verifies the server.

    @param hostname: the name the server certificate must carry in its
        subjectAltName (a DNS name or an IP address).
    @param ca: files of CA certificates to trust; by default the system's
        trust store.
    @param clientCertificate: for mutual TLS, the client certificate file.
    @param clientKey: its private key (default: the certificate file).
    @raise TLSConfigurationError: if a file is missing or invalid.
    """
    key = _filesKey([*(ca or ()), *((clientCertificate,) if clientCertificate is not None else ()),
                     *((clientKey,) if clientKey is not None else ())], bool(ca))
    certificateOptions = _clientOptionsMade.get(key)
    if certificateOptions is None:
        trustRoot = _trustRoot(ca) if ca else platformTrust()
        # As in serverTLSOptions: the cryptography objects go as Any.
        options: Dict[str, Any] = {}
        if clientCertificate is not None:
            leaf, *extra = loadCertificates(clientCertificate)
            options = dict(
                certificate=leaf,
                privateKey=loadPrivateKey(clientKey if clientKey is not None else clientCertificate),
                extraCertChain=extra,
            )
        certificateOptions = CertificateOptions(trustRoot=trustRoot, raiseMinimumTo=MINIMUM_TLS_VERSION,
                                                **options)
        if len(_clientOptionsMade) >= _MAX_CLIENT_OPTIONS:
            _clientOptionsMade.pop(next(iter(_clientOptionsMade)))
        _clientOptionsMade[key] = certificateOptions
    return StrictClientTLSOptions(hostname, certificateOptions)


#: The client TLS settings made from files, by L{_filesKey}: many clients in
#: one process (a fleet's worth of connections, a test suite) share one
#: OpenSSL context instead of each reading and parsing the files and making
#: its own, which costs a connection about as much CPU as its handshake.
_clientOptionsMade: Dict[Any, CertificateOptions] = {}
_MAX_CLIENT_OPTIONS = 32


def _filesKey(paths: Sequence[PathLike], givenCA: bool) -> Any:
    """
    What identifies TLS settings made from C{paths}: each file's path, size
    and modification time, so that a replaced file makes new settings.
    Files that cannot be read make a key of their own (the error comes when
    they are read).
    """
    parts: List[Any] = [givenCA]
    for path in paths:
        try:
            status = Path(path).stat()
        except OSError:
            return object()
        parts.append((str(Path(path).resolve()), status.st_size, status.st_mtime_ns))
    return tuple(parts)

"""
TLS settings, exercised over TLS in memory (no network): the client refuses
a certificate whose names do not match -- including one with no
subjectAltName -- and mutual TLS works both ways.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.task import Clock

from txtlsjson.errors import CertificateNameError, TLSConfigurationError
from txtlsjson.protocol import TLSJSONClientFactory, TLSJSONClientProtocol, TLSJSONServerFactory
from txtlsjson.tls import MINIMUM_TLS_VERSION, clientTLSOptions, serverTLSOptions

from .conftest import PKI
from .helpers import connectInMemory


class _LossRecordingProtocol(TLSJSONClientProtocol):
    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.append(reason)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class _RecordingClientFactory(TLSJSONClientFactory):
    protocol = _LossRecordingProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost: List[Any] = []
        self.built: List[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.built.append(protocol)
        return protocol


class _RecordingServerFactory(TLSJSONServerFactory):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.built: List[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.built.append(protocol)
        return protocol


def handshake(serverTLS: Any, clientTLS: Any) -> Any:
    """
    Connect a server and a client over TLS in memory and pump until quiet.

    @return: the client's and the server's tls-json protocols, and the
        reasons the client's connection was lost (if it was).
    """
    clock = Clock()
    serverFactory = _RecordingServerFactory("pw", reactor=clock)
    clientFactory = _RecordingClientFactory("pw", reactor=clock)
    _, _, pump = connectInMemory(serverFactory, clientFactory, clock, serverTLS, clientTLS)
    pump.flush()
    [client] = clientFactory.built
    [server] = serverFactory.built
    return client, server, clientFactory.lost


def test_verifiedHandshake(pki: PKI) -> None:
    """
    A certificate from the trusted CA naming the host: the password step
    runs over TLS and both sides authenticate.
    """
    client, server, lost = handshake(
        serverTLSOptions(pki.serverCert, pki.serverKey),
        clientTLSOptions("localhost", [pki.caCert]))
    assert client.isAuthenticated and server.isAuthenticated
    assert lost == []


def test_ipAddressName(pki: PKI) -> None:
    """
    An IP address is checked against the certificate's IP subjectAltNames.
    """
    client, server, lost = handshake(
        serverTLSOptions(pki.serverCert, pki.serverKey),
        clientTLSOptions("127.0.0.1", [pki.caCert]))
    assert client.isAuthenticated


def test_hostnameMismatchRefused(pki: PKI) -> None:
    """
    A valid certificate for another name is refused before the password is
    sent.
    """
    client, server, lost = handshake(
        serverTLSOptions(pki.wrongNameCert, pki.wrongNameKey),
        clientTLSOptions("localhost", [pki.caCert]))
    assert not client.isAuthenticated and not server.isAuthenticated
    assert lost[0].check(CertificateNameError)
    assert "does not match 'localhost'" in str(lost[0].value)


def test_noSubjectAltNameRefused(pki: PKI) -> None:
    """
    A certificate with the right CN but no subjectAltName (what the tls-json
    README's openssl commands make) is refused -- Twisted's own
    C{optionsForClientTLS} would only log it -- with an error that says how
    to fix it.
    """
    client, server, lost = handshake(
        serverTLSOptions(pki.noSANCert, pki.noSANKey),
        clientTLSOptions("localhost", [pki.caCert]))
    assert not client.isAuthenticated and not server.isAuthenticated
    assert lost[0].check(CertificateNameError)
    assert "subjectAltName=DNS:localhost" in str(lost[0].value)


def test_untrustedCARefused(pki: PKI) -> None:
    """
    A certificate from a CA the client does not trust is refused.
    """
    client, server, lost = handshake(
        serverTLSOptions(pki.serverCert, pki.serverKey),
        clientTLSOptions("localhost", [pki.otherCACert]))
    assert not client.isAuthenticated and not server.isAuthenticated
    assert lost


def test_mutualTLS(pki: PKI) -> None:
    """
    With C{clientCA}, a client certificate from that CA is accepted and one
    from another CA, or none, is refused.
    """
    serverTLS = serverTLSOptions(pki.serverCert, pki.serverKey, clientCA=[pki.caCert])
    client, server, lost = handshake(
        serverTLS, clientTLSOptions("localhost", [pki.caCert], pki.clientCert, pki.clientKey))
    assert client.isAuthenticated and server.isAuthenticated
    for clientTLS in (clientTLSOptions("localhost", [pki.caCert]),
                      clientTLSOptions("localhost", [pki.caCert], pki.strangerCert,
                                       pki.strangerKey)):
        client, server, lost = handshake(serverTLS, clientTLS)
        assert not server.isAuthenticated
        assert lost


def test_minimumVersion(pki: PKI) -> None:
    """
    Both sides refuse anything older than TLS 1.2.
    """
    from OpenSSL import SSL
    from OpenSSL._util import lib

    assert MINIMUM_TLS_VERSION.name == "TLSv1_2"
    refused = SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1
    for context in (serverTLSOptions(pki.serverCert, pki.serverKey).getContext(),
                    clientTLSOptions("localhost", [pki.caCert])._options.getContext()):
        # Read, not set: a context that made a connection cannot change.
        assert lib.SSL_CTX_get_options(context._context) & refused == refused


def test_clientsShareSettingsMadeFromTheSameFiles(pki: PKI, tmp_path: Any) -> None:
    """
    Clients whose TLS settings come from the same files share one OpenSSL
    context; a file replaced since makes new settings, with the new file.
    """
    import shutil

    first = clientTLSOptions("localhost", [pki.caCert])
    assert clientTLSOptions("other.example", [pki.caCert])._options is first._options
    ca = tmp_path / "ca.crt"
    shutil.copy(pki.caCert, ca)
    before = clientTLSOptions("localhost", [ca])._options
    assert before is not first._options
    shutil.copy(pki.otherCACert, ca)
    after = clientTLSOptions("localhost", [ca])
    assert after._options is not before
    client, server, lost = handshake(serverTLSOptions(pki.serverCert, pki.serverKey), after)
    assert not client.isAuthenticated and lost


def test_configurationErrors(pki: PKI, tmp_path: Any) -> None:
    """
    Missing, unreadable or mismatched files are refused with one clear
    message naming the file.
    """
    with pytest.raises(TLSConfigurationError, match="cannot read certificate file.*missing.crt"):
        serverTLSOptions(tmp_path / "missing.crt", pki.serverKey)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem")
    with pytest.raises(TLSConfigurationError, match="no valid PEM certificate"):
        serverTLSOptions(junk, pki.serverKey)
    with pytest.raises(TLSConfigurationError, match="not an unencrypted PEM private key"):
        serverTLSOptions(pki.serverCert, junk)
    with pytest.raises(TLSConfigurationError, match="does not match certificate"):
        serverTLSOptions(pki.serverCert, pki.clientKey)
    with pytest.raises(TLSConfigurationError, match="cannot read certificate file"):
        clientTLSOptions("localhost", [tmp_path / "nope.crt"])


def test_failuresExplained(pki: PKI) -> None:
    """
    A refused handshake is explained in L{ConnectionFailed}'s message, with
    what to do: an untrusted server certificate (give its CA), and a client
    certificate the server refused or wanted.
    """
    from txtlsjson.errors import ConnectionFailed

    _, _, lost = handshake(serverTLSOptions(pki.serverCert, pki.serverKey),
                           clientTLSOptions("localhost", [pki.otherCACert]))
    message = str(ConnectionFailed(lost[0]))
    assert "not trusted" in message and "--ca" in message, message
    serverTLS = serverTLSOptions(pki.serverCert, pki.serverKey, clientCA=[pki.caCert])
    for clientTLS in (clientTLSOptions("localhost", [pki.caCert]),
                      clientTLSOptions("localhost", [pki.caCert], pki.strangerCert,
                                       pki.strangerKey)):
        _, _, lost = handshake(serverTLS, clientTLS)
        message = str(ConnectionFailed(lost[0]))
        assert "client certificate" in message and "--client-cert" in message, message

"""
Per-client credentials: the file and its editing, the authenticators, the
server's password step with an authenticator that answers later, identity,
and reloading with revocation -- in memory with a L{Clock}, and over real
TLS on 127.0.0.1.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, Dict, List, Optional, cast

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from txtlsjson import Client, Server
from txtlsjson.credentials import (
    CredentialsFile,
    Identity,
    SharedPassword,
    addCredential,
    parseCredentials,
    readCredentials,
    removeCredential,
)
from txtlsjson.errors import (
    AuthenticationFailed,
    AuthenticatorFailed,
    CredentialRevoked,
    CredentialsError,
    InvalidSetting,
)
from txtlsjson.protocol import TLSJSONServerFactory

from .conftest import PKI
from .helpers import connectProtocol
from .inreactor import inReactor
from .test_integration import nextEvent

# -- the file ---------------------------------------------------------------


def test_addWritesOnlyAHash(tmp_path: Path) -> None:
    """
    C{add} returns a fresh secret and writes its name, key id and scrypt
    hash -- never the secret -- to a file only its owner can read.
    """
    path = tmp_path / "clients"
    secret = addCredential(path, "worker-1")
    other = addCredential(path, "worker-2")
    keyId, _, token = secret.partition(".")
    assert len(keyId) == 12 and len(token) >= 43 and secret != other
    text = path.read_text()
    assert token not in text and other.partition(".")[2] not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credentials = readCredentials(path)
    assert sorted(c.name for c in credentials.values()) == ["worker-1", "worker-2"]
    assert credentials[keyId].hashed.startswith("scrypt$16384$8$1$")
    assert credentials[keyId].matches(secret)
    assert not credentials[keyId].matches(other)


def test_addTakenOrInvalidNameRefused(tmp_path: Path) -> None:
    """
    Adding a name that is there already, or not a valid name, fails with a
    clear message and leaves the file as it was.
    """
    path = tmp_path / "clients"
    addCredential(path, "worker-1")
    before = path.read_bytes()
    with pytest.raises(CredentialsError, match="'worker-1' is already in .*remove it first"):
        addCredential(path, "worker-1")
    with pytest.raises(CredentialsError, match="not a valid name"):
        addCredential(path, "two words")
    assert path.read_bytes() == before


def test_removeRevokes(tmp_path: Path) -> None:
    """
    C{remove} takes the client's line out and keeps the others (and the
    comments); removing a name that is not there fails.
    """
    path = tmp_path / "clients"
    addCredential(path, "worker-1")
    kept = addCredential(path, "worker-2")
    removeCredential(path, "worker-1")
    assert [c.name for c in readCredentials(path).values()] == ["worker-2"]
    assert path.read_text().startswith("# txtlsjson credentials")
    assert CredentialsFile(path, inThread=False).verify(kept) is not None
    with pytest.raises(CredentialsError, match="'worker-1' is not in"):
        removeCredential(path, "worker-1")


@pytest.mark.parametrize("line, message", [
    ("worker-1 abcdefabcdef", "expected NAME KEYID HASH, found 2 field"),
    ("wörker abcdefabcdef scrypt$16384$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "not a valid name"),
    ("worker-1 xyz scrypt$16384$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "not a key id"),
    ("worker-1 abcdefabcdef sha1$abc", "not scrypt"),
    ("worker-1 abcdefabcdef scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "out of range"),
    ("worker-1 abcdefabcdef scrypt$16384$8$1$!!$AAAA", "not numbers and base64"),
])
def test_badLineNamed(line: str, message: str) -> None:
    """
    A bad line is refused with the file's name, the line's number and what
    is wrong with it.
    """
    text = "# comment\n\n" + line + "\n"
    with pytest.raises(CredentialsError, match=rf"clients, line 3: .*{message}"):
        parseCredentials(text, "clients")


def test_duplicatesRefused(tmp_path: Path) -> None:
    """
    A name or a key id that appears twice is an error.
    """
    path = tmp_path / "clients"
    addCredential(path, "worker-1")
    line = path.read_text().splitlines()[-1]
    with pytest.raises(CredentialsError, match="line 2: the name 'worker-1' appears twice"):
        parseCredentials(line + "\n" + line, "clients")
    other = line.replace("worker-1", "worker-2")
    with pytest.raises(CredentialsError, match="line 2: the key id .* appears twice"):
        parseCredentials(line + "\n" + other, "clients")


def test_missingFileSaysHowToMakeOne(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no credentials file .*tlsjson credentials add NAME"):
        CredentialsFile(tmp_path / "nothing")


# -- the authenticators -------------------------------------------------------------


@pytest.fixture
def clients(tmp_path: Path) -> Any:
    """
    A credentials file with two clients: the path and their secrets.
    """
    path = tmp_path / "clients"
    return path, {name: addCredential(path, name) for name in ("worker-1", "worker-2")}


def test_credentialsFileIdentifies(clients: Any) -> None:
    """
    A client's secret is accepted as that client; another token with its
    key id, an unknown key id, or no key id at all are refused.
    """
    path, secrets = clients
    authenticator = CredentialsFile(path, inThread=False)
    secret = secrets["worker-1"]
    identity = authenticator(secret, None)
    assert identity == Identity(name="worker-1", keyId=secret.partition(".")[0])
    assert str(identity) == "worker-1"
    assert authenticator(secret[:-1] + ("A" if secret[-1] != "A" else "B"), None) is None
    assert authenticator("000000000000." + secret.partition(".")[2], None) is None
    assert authenticator("no key id", None) is None


def test_acceptedSecretCheckedWithoutScryptAgain(clients: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A secret accepted once is checked against a keyed hash of it the next
    times (a reconnecting client costs no scrypt), while a wrong token for
    the same key id is still refused.
    """
    from txtlsjson import credentials as module

    path, secrets = clients
    authenticator = CredentialsFile(path, inThread=False)
    calls: List[int] = []
    real = module._scrypt
    def counting(*arguments: Any) -> bytes:
        calls.append(1)
        return real(*arguments)

    monkeypatch.setattr(module, "_scrypt", counting)
    secret = secrets["worker-1"]
    assert authenticator(secret, None) is not None
    assert authenticator(secret, None) is not None
    assert authenticator(secret + "x", None) is None
    assert calls == [1]


def test_reloadRevokesAndKeepsOldOnBadFile(clients: Any) -> None:
    """
    A reload drops what was removed (its identity is no longer current, its
    secret refused) and takes what was added; a file made bad meanwhile is
    refused with the reason, and the credentials already loaded stay.
    """
    path, secrets = clients
    authenticator = CredentialsFile(path, inThread=False)
    first = cast(Identity, authenticator(secrets["worker-1"], None))
    second = cast(Identity, authenticator(secrets["worker-2"], None))
    removeCredential(path, "worker-1")
    third = addCredential(path, "worker-3")
    assert authenticator(third, None) is None
    authenticator.reload()
    assert not authenticator.isCurrent(first) and authenticator.isCurrent(second)
    assert authenticator(secrets["worker-1"], None) is None
    assert authenticator(third, None) == Identity(name="worker-3", keyId=third.partition(".")[0])
    path.write_text(path.read_text() + "garbage\n")
    with pytest.raises(CredentialsError, match="line 5: expected NAME KEYID HASH"):
        authenticator.reload()
    assert authenticator.names == ["worker-2", "worker-3"]
    assert authenticator(secrets["worker-2"], None) is not None


def test_sharedPasswordNeverShown() -> None:
    assert "pw" not in repr(SharedPassword("pw"))
    assert SharedPassword("pw")("pw", None) == Identity()
    assert SharedPassword("pw")("pW", None) is None


def test_passwordOrAuthenticator() -> None:
    """
    A factory takes a password or an authenticator, not both.
    """
    with pytest.raises(InvalidSetting, match="not both"):
        TLSJSONServerFactory("pw", authenticator=SharedPassword("pw"), reactor=Clock())


# -- the password step with an authenticator ---------------------------------------


class LaterAuthenticator:
    """
    Answers each password with a Deferred the test fires.
    """

    def __init__(self) -> None:
        self.asked: List[Deferred[Any]] = []
        self.passwords: List[str] = []

    def __call__(self, password: str, certificate: Any) -> "Deferred[Any]":
        self.passwords.append(password)
        d: Deferred[Any] = Deferred()
        self.asked.append(d)
        return d


def recordingServer(authenticator: Any, clock: Optional[Clock] = None, **settings: Any) -> Any:
    factory = TLSJSONServerFactory(authenticator=authenticator, reactor=clock or Clock(), **settings)
    protocol, transport = connectProtocol(factory)
    protocol.errors = []
    protocol.messages = []
    protocol.errorReceived = protocol.errors.append
    protocol.messageReceived = protocol.messages.append
    return factory, protocol, transport


def test_laterAnswerHoldsLines() -> None:
    """
    While the authenticator has not answered, the connection reads nothing
    more and keeps what came; once it accepts (with a name), the client is
    authenticated as that name and the kept lines are delivered in order.
    """
    authenticator = LaterAuthenticator()
    _, protocol, transport = recordingServer(authenticator, authFailureDelay=0)
    protocol.dataReceived(b'{"password":"k.t"}\n{"n":1}\n')
    protocol.dataReceived(b'{"n":2}\n')
    assert authenticator.passwords == ["k.t"]
    assert transport.producerState == "paused"
    assert transport.lines() == [] and protocol.messages == []
    authenticator.asked[0].callback("worker-7")
    assert transport.lines() == [b'{"authenticated":true}']
    assert transport.producerState == "producing"
    assert protocol.messages == [{"n": 1}, {"n": 2}]
    assert protocol.identity == Identity(name="worker-7")


def test_laterRefusal() -> None:
    """
    An authenticator answering L{None} later refuses the client as a wrong
    password does, and what it sent meanwhile is never delivered.
    """
    authenticator = LaterAuthenticator()
    _, protocol, transport = recordingServer(authenticator, authFailureDelay=0)
    protocol.dataReceived(b'{"password":"bad"}\n{"n":1}\n')
    authenticator.asked[0].callback(None)
    assert transport.lines() == [b'{"error":"incorrect password"}']
    assert [type(e) for e in protocol.errors] == [AuthenticationFailed]
    assert protocol.messages == [] and transport.disconnecting


def test_failingAuthenticatorDropsWithoutSayingWrongPassword() -> None:
    """
    An authenticator that raises, or whose Deferred fails, has the client
    dropped without an "incorrect password" answer (which would stop a
    tls-json client from trying again), reported as L{AuthenticatorFailed}.
    """
    for failing in (lambda password, certificate: 1 / 0,
                    lambda password, certificate: Deferred.fromCoroutine(_raise())):
        _, protocol, transport = recordingServer(failing, authFailureDelay=0)
        protocol.dataReceived(b'{"password":"x"}\n')
        assert transport.lines() == []
        assert [type(e) for e in protocol.errors] == [AuthenticatorFailed]
        assert transport.disconnecting and not protocol.isAuthenticated


async def _raise() -> None:
    raise RuntimeError("database down")


def test_coroutineAuthenticator() -> None:
    """
    An authenticator may be a coroutine function.
    """
    async def authenticate(password: str, certificate: Any) -> Any:
        return Identity(name="db-" + password) if password == "right" else None

    _, protocol, transport = recordingServer(authenticate, authFailureDelay=0)
    protocol.dataReceived(b'{"password":"right"}\n')
    assert transport.lines() == [b'{"authenticated":true}']
    assert str(protocol.identity) == "db-right"


def test_disconnectWhileAuthenticatorThinks() -> None:
    """
    A client that goes while its password is being checked cancels the
    check; a late answer is ignored, nothing is written and no timer is
    left.
    """
    clock = Clock()
    authenticator = LaterAuthenticator()
    _, protocol, transport = recordingServer(authenticator, clock)
    protocol.dataReceived(b'{"password":"x"}\n')
    transport.loseConnection()
    assert authenticator.asked[0].called  # cancelled
    authenticator.asked[0].callback("late")  # a late answer is ignored
    assert transport.lines() == [] and not protocol.isAuthenticated
    assert clock.getDelayedCalls() == []


def test_authenticatorThatNeverAnswers() -> None:
    """
    An authenticator that has not answered within C{authTimeout} has its
    check cancelled and the client dropped (L{AuthenticatorFailed}); no
    timer is left.
    """
    clock = Clock()
    authenticator = LaterAuthenticator()
    _, protocol, transport = recordingServer(authenticator, clock, authTimeout=5,
                                             authFailureDelay=0)
    protocol.dataReceived(b'{"password":"x"}\n')
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting and transport.lines() == []
    assert [type(e) for e in protocol.errors] == [AuthenticatorFailed]
    assert "did not answer within 5" in str(protocol.errors[0])
    assert authenticator.asked[0].called  # cancelled
    assert clock.getDelayedCalls() == []


def test_failedAttemptsStillPaced() -> None:
    """
    With an authenticator, a refused attempt slows the next attempt from
    the same address as a wrong shared password does.
    """
    clock = Clock()
    authenticator = LaterAuthenticator()
    factory, first, _ = recordingServer(authenticator, clock, authFailureDelay=2)
    first.dataReceived(b'{"password":"bad"}\n')
    authenticator.asked[0].callback(None)
    second, _ = connectProtocol(factory)
    second.dataReceived(b'{"password":"good"}\n')
    assert len(authenticator.asked) == 1
    clock.advance(2)
    assert len(authenticator.asked) == 2


def test_reloadClosesRevokedConnections(clients: Any) -> None:
    """
    L{TLSJSONServerFactory.reloadCredentials} closes the connection of a
    client whose credential was removed, with L{CredentialRevoked}, and
    leaves the others alone; without credentials it says so.
    """
    path, secrets = clients
    factory = TLSJSONServerFactory(authenticator=CredentialsFile(path, inThread=False), reactor=Clock())
    connected = {}
    for name, secret in secrets.items():
        protocol, transport = connectProtocol(factory)
        protocol.errors = []
        protocol.errorReceived = protocol.errors.append
        protocol.dataReceived(b'{"password":"%s"}\n' % secret.encode())
        assert transport.lines() == [b'{"authenticated":true}']
        connected[name] = (protocol, transport)
    removeCredential(path, "worker-1")
    revoked = factory.reloadCredentials()
    gone, goneTransport = connected["worker-1"]
    kept, keptTransport = connected["worker-2"]
    assert revoked == [gone]
    assert goneTransport.disconnecting and [type(e) for e in gone.errors] == [CredentialRevoked]
    assert "worker-1" in str(gone.errors[0])
    assert not keptTransport.disconnecting and kept.errors == []
    with pytest.raises(CredentialsError, match="no credentials to reload"):
        TLSJSONServerFactory("pw", reactor=Clock()).reloadCredentials()


# -- over real TLS ----------------------------------------------------------------------


@inReactor
async def test_perClientSecretsOverTLS(clients: Any, pki: PKI) -> None:
    """
    Over real TLS (the scrypt check in the reactor's thread pool): each
    client authenticates with its own secret and the server knows which it
    is; a revoked client is closed on reload and cannot come back, the
    other stays.
    """
    path, secrets = clients
    server = Server(authenticator=CredentialsFile(path), certificate=pki.serverCert,
                    privateKey=pki.serverKey)
    await server.listen(0, "127.0.0.1")
    names: Dict[str, int] = {}
    server.on("authenticated", lambda i, peer: names.__setitem__(str(server.identity(i)), i))
    server.on("request", lambda i, request, res: res.send({"you": str(server.identity(i))}))
    made = []
    try:
        for name in ("worker-1", "worker-2"):
            client = Client("localhost", server.port, secrets[name], ca=[pki.caCert])  # type: ignore[arg-type]
            made.append(client)
            await client.connect()
            assert await client.request({}) == {"you": name}
        revokedError = nextEvent(server, "error")
        removeCredential(path, "worker-1")
        assert server.reloadCredentials() == [names["worker-1"]]
        connectionId, error = await revokedError
        assert connectionId == names["worker-1"] and isinstance(error, CredentialRevoked)
        await nextEvent(made[0], "close")
        assert await made[1].request({}) == {"you": "worker-2"}
        again = Client("localhost", server.port, secrets["worker-1"], ca=[pki.caCert])  # type: ignore[arg-type]
        with pytest.raises(AuthenticationFailed):
            await again.connect()
    finally:
        for client in made:
            await client.disconnect()
        await server.close()


@inReactor
async def test_mutualTLSIdentity(pki: PKI) -> None:
    """
    With mutual TLS, a client's identity carries its certificate's subject,
    and an authenticator is given the certificate.
    """
    seen: List[Any] = []

    def authenticate(password: str, certificate: Any) -> Any:
        seen.append(certificate)
        return succeed(Identity(name="from-db") if password == "pw" else None)

    server = Server(authenticator=authenticate, certificate=pki.serverCert,
                    privateKey=pki.serverKey, clientCA=[pki.caCert])
    await server.listen(0, "127.0.0.1")
    client = Client("localhost", server.port, "pw", ca=[pki.caCert],  # type: ignore[arg-type]
                    clientCertificate=pki.clientCert, clientKey=pki.clientKey)
    try:
        authenticated = nextEvent(server, "authenticated")
        await client.connect()
        connectionId, _ = await authenticated
        identity = server.identity(connectionId)
        assert identity == Identity(name="from-db", subject="CN=worker-1")
        assert seen[0].subject.rfc4514_string() == "CN=worker-1"
    finally:
        await client.disconnect()
        await server.close()

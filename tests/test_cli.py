"""
The C{tlsjson} command, run as a real process against a real server on
127.0.0.1: each subcommand, stdin mode and every exit code.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, List, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from txtlsjson import Server
from txtlsjson.cli import (
    EXIT_AUTHENTICATION,
    EXIT_BAD_INPUT,
    EXIT_CONNECTION,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    main,
)

from .conftest import PKI
from .inreactor import blockOn, inReactor
from .processes import tlsjson


@pytest.fixture
def server(pki: PKI) -> Any:
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    blockOn(server.listen(0, "127.0.0.1"))
    server.on("request", lambda i, req, res: res.send({"echo": req}))
    yield server
    blockOn(server.close())


def common(server: Server, pki: PKI) -> List[str]:
    return ["--port", str(server.port), "--ca", str(pki.caCert)]


ENV = {"TLSJSON_PASSWORD": "s3cret"}


@inReactor
async def test_request(server: Server, pki: PKI) -> None:
    """
    C{request} prints the response as JSON and exits 0.
    """
    outcome = await tlsjson("request", *common(server, pki), '{"hello": "w\u00f6rld"}',
                            env=ENV).ended
    assert outcome.code == EXIT_OK, outcome
    assert outcome.out == '{"echo": {"hello": "w\u00f6rld"}}\n'


@inReactor
async def test_requestPasswordFile(server: Server, pki: PKI, tmp_path: Path) -> None:
    """
    The password may come from --password-file.
    """
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    outcome = await tlsjson("request", *common(server, pki), "--password-file", str(path),
                            "{}").ended
    assert outcome.code == EXIT_OK, outcome


@inReactor
async def test_requestStdin(server: Server, pki: PKI) -> None:
    """
    Without a message, each JSON line of stdin is one request; blank lines
    are skipped.
    """
    outcome = await tlsjson("request", *common(server, pki), env=ENV,
                            stdin=b'{"n": 1}\n\n{"n": 2}\n').ended
    assert outcome.code == EXIT_OK, outcome
    assert outcome.out.splitlines() == ['{"echo": {"n": 1}}', '{"echo": {"n": 2}}']


@inReactor
async def test_send(server: Server, pki: PKI) -> None:
    """
    C{send} delivers one message, or each stdin line, and exits 0.
    """
    received: List[Any] = []
    server.on("message", lambda i, m: received.append(m))
    closed = _closes(server, 2)
    one = await tlsjson("send", *common(server, pki), '{"event": "started"}', env=ENV).ended
    many = await tlsjson("send", *common(server, pki), env=ENV,
                         stdin=b'{"n": 1}\n{"n": 2}\n').ended
    await closed
    assert (one.code, many.code) == (EXIT_OK, EXIT_OK), (one, many)
    assert received == [{"event": "started"}, {"n": 1}, {"n": 2}]


def _closes(server: Server, count: int) -> Any:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    d: Deferred[None] = Deferred()
    seen: List[int] = []

    def closed(connectionId: int) -> None:
        seen.append(connectionId)
        if len(seen) == count and not d.called:
            d.callback(None)

    server.on("close", closed)
    return d.addTimeout(20, reactor)


@inReactor
async def test_listen(server: Server, pki: PKI) -> None:
    """
    C{listen} stays connected, prints each message as a JSON line, and exits
    0 on SIGINT.
    """
    ids: List[int] = []
    server.on("authenticated", lambda i, peer: ids.append(i))
    process = tlsjson("listen", *common(server, pki), env=ENV)
    await process.waitFor("connected to")
    server.send(ids[0], {"tick": 1})
    server.send(ids[0], {"tick": 2})
    await process.waitFor('{"tick": 2}')
    process.signal("INT")
    outcome = await process.ended
    assert outcome.code == EXIT_OK, outcome
    assert outcome.out.splitlines() == ['{"tick": 1}', '{"tick": 2}']


@inReactor
async def test_wrongPassword(server: Server, pki: PKI) -> None:
    """
    A refused password exits 4 with one line on stderr.
    """
    outcome = await tlsjson("request", *common(server, pki), "{}",
                            env={"TLSJSON_PASSWORD": "nope"}).ended
    assert outcome.code == EXIT_AUTHENTICATION
    assert outcome.err == "tlsjson: incorrect password\n"


@pytest.mark.parametrize("message", ['{"a": ', "[1, 2]", '{"requestId": 1}'])
@inReactor
async def test_badInput(server: Server, pki: PKI, message: str) -> None:
    """
    A message that is not a JSON object (or one the protocol refuses)
    exits 6.
    """
    outcome = await tlsjson("request", *common(server, pki), message, env=ENV).ended
    assert outcome.code == EXIT_BAD_INPUT, outcome
    assert outcome.err.startswith("tlsjson: ") and outcome.err.count("\n") == 1


@inReactor
async def test_badStdinLine(server: Server, pki: PKI) -> None:
    """
    A bad stdin line exits 6, naming the line, after the lines before it
    were sent.
    """
    outcome = await tlsjson("request", *common(server, pki), env=ENV,
                            stdin=b'{"n": 1}\nnot json\n').ended
    assert outcome.code == EXIT_BAD_INPUT
    assert outcome.out == '{"echo": {"n": 1}}\n'
    assert "stdin line 2" in outcome.err


@inReactor
async def test_connectionRefused(pki: PKI) -> None:
    """
    Nothing listening exits 3.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await tlsjson("request", "--port", str(port), "--ca", str(pki.caCert), "{}",
                            env=ENV).ended
    assert outcome.code == EXIT_CONNECTION
    assert "refused" in outcome.err


@inReactor
async def test_certificateNameMismatch(server: Server, pki: PKI) -> None:
    """
    A server certificate that does not name the host exits 3.
    """
    outcome = await tlsjson("request", *common(server, pki), "--server-name", "example.org",
                            "{}", env=ENV).ended
    assert outcome.code == EXIT_CONNECTION
    assert "does not match 'example.org'" in outcome.err


@inReactor
async def test_untrustedServerExplained(server: Server, pki: PKI) -> None:
    """
    A server certificate from a CA the client does not trust exits 3 with
    one line saying so and what to do, OpenSSL's own words after it.
    """
    outcome = await tlsjson("request", "--port", str(server.port), "--ca", str(pki.otherCACert),
                            "{}", env=ENV).ended
    assert outcome.code == EXIT_CONNECTION
    [line] = outcome.err.splitlines()
    assert line.startswith("tlsjson: the server's certificate is not trusted: give the CA"), line
    assert "--ca FILE" in line


@inReactor
async def test_timeout(pki: PKI) -> None:
    """
    A request that gets no response within --timeout exits 5 (this server
    has no request handler, so it never answers).
    """
    silent = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    await silent.listen(0, "127.0.0.1")
    try:
        outcome = await tlsjson("request", "--port", str(silent.port), "--ca", str(pki.caCert),
                                "--timeout", "0.5", "{}", env=ENV).ended
    finally:
        await silent.close()
    assert outcome.code == EXIT_TIMEOUT
    assert outcome.err == "tlsjson: request timeout\n"


@inReactor
async def test_noPassword(server: Server, pki: PKI) -> None:
    """
    No password anywhere is a usage error, exit 2.
    """
    outcome = await tlsjson("request", *common(server, pki), "{}").ended
    assert outcome.code == EXIT_USAGE
    assert "TLSJSON_PASSWORD" in outcome.err


def run(argv: List[str]) -> Any:
    import io

    out, err = io.StringIO(), io.StringIO()
    codes: List[int] = []
    main(argv, out=out, err=err, exit=codes.append)  # type: ignore[arg-type]
    return out.getvalue(), err.getvalue(), codes[0]


@pytest.mark.parametrize("keyType, keyClass", [("rsa", rsa.RSAPrivateKey),
                                               ("ecdsa", ec.EllipticCurvePrivateKey)])
def test_certs(tmp_path: Path, keyType: str, keyClass: type) -> None:
    """
    C{tlsjson certs} writes a key and a SHA-256 certificate valid ~10 years
    whose subjectAltName names the host, and refuses to overwrite without
    --force.
    """
    out, err, code = run(["certs", "--cn", "localhost", "--out", str(tmp_path),
                          "--key-type", keyType])
    assert code == EXIT_OK and "wrote" in out
    certificate = x509.load_pem_x509_certificate((tmp_path / "localhost.crt").read_bytes())
    key = load_pem_private_key((tmp_path / "localhost.key").read_bytes(), None)
    assert isinstance(key, keyClass)
    assert certificate.signature_hash_algorithm.name == "sha256"  # type: ignore[union-attr]
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    days = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days
    assert 3649 <= days <= 3651
    assert (tmp_path / "localhost.key").stat().st_mode & 0o077 == 0

    out, err, code = run(["certs", "--cn", "localhost", "--out", str(tmp_path)])
    assert code == EXIT_ERROR and "use --force" in err
    out, err, code = run(["certs", "--cn", "localhost", "--out", str(tmp_path), "--force"])
    assert code == EXIT_OK


def test_certsDefaultToECDSA(tmp_path: Path) -> None:
    """
    Without C{--key-type}, C{tlsjson certs} makes an ECDSA P-256 key: its
    handshakes cost a server less than RSA 2048's.
    """
    out, err, code = run(["certs", "--cn", "localhost", "--out", str(tmp_path)])
    assert code == EXIT_OK, err
    key = load_pem_private_key((tmp_path / "localhost.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    certificate = x509.load_pem_x509_certificate((tmp_path / "localhost.crt").read_bytes())
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def test_certsWorkForHostnameVerification(tmp_path: Path) -> None:
    """
    A certificate from C{tlsjson certs} passes the client's hostname check.
    """
    from tests.test_tls import handshake
    from txtlsjson.tls import clientTLSOptions, serverTLSOptions

    run(["certs", "--cn", "myhost.example", "--out", str(tmp_path), "--name", "srv"])
    client, server, lost = handshake(
        serverTLSOptions(tmp_path / "srv.crt", tmp_path / "srv.key"),
        clientTLSOptions("myhost.example", [tmp_path / "srv.crt"]))
    assert client.isAuthenticated and lost == []


@inReactor
async def test_silentServerTimesOut(pki: PKI) -> None:
    """
    A server that accepts the TCP connection and then says nothing (no TLS,
    no password answer) exits 5 within --timeout, with a clear line.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    port: Any = cast(Any, reactor).listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        outcome = await tlsjson("request", "--port", str(port.getHost().port), "--ca",
                                str(pki.caCert), "--timeout", "0.5", "{}", env=ENV).ended
    finally:
        await port.stopListening()
    assert outcome.code == EXIT_TIMEOUT, outcome
    assert "no answer from localhost" in outcome.err and "0.5 seconds" in outcome.err


@pytest.mark.parametrize("argv, message", [
    (["request", "--port", "0", "{}"],
     "argument --port: must be a port number from 1 to 65535, not '0'"),
    (["request", "--port", "70000", "{}"], "argument --port: must be a port number"),
    (["request", "--timeout", "0", "{}"], "argument --timeout: must be a number of seconds > 0"),
    (["listen", "--reconnect-interval", "-1"],
     "argument --reconnect-interval: must be a number of seconds >= 0"),
    (["listen", "--reconnect-interval", "soon"],
     "argument --reconnect-interval: must be a number of seconds >= 0, not 'soon'"),
    (["certs", "--days", "0"], "not a number of days >= 1"),
    (["certs", "--key-type", "dsa"], "invalid choice"),
])
def test_usageErrors(argv: List[str], message: str, capsys: Any) -> None:
    """
    Out-of-range arguments are usage errors (exit 2) naming the argument.
    """
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err

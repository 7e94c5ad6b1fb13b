"""
Tests of C{twistd tlsjson}'s options, its service run in-process over real
TLS on 127.0.0.1, and handler loading.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Iterator, List, cast

import pytest
from twisted.python import usage

from txtlsjson import Client, Server
from txtlsjson.errors import HandlerError, ListenFailed, PasswordError
from txtlsjson.handler import EchoHandler, loadHandler
from txtlsjson.password import PASSWORD_ENVIRONMENT_VARIABLE, loadPassword
from txtlsjson.service import TLSJSONService
from txtlsjson.tap import Options, makeService

from .conftest import PKI
from .inreactor import inReactor


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


@pytest.fixture
def passwordFile(tmp_path: Path) -> str:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return str(path)


def test_portForm(pki: PKI) -> None:
    """
    The design card's form: --port with --cert and --key, and every server
    setting.
    """
    options = parse("--port", "8888", "--cert", str(pki.serverCert), "--key", str(pki.serverKey),
                    "--chain", "a.pem", "--chain", "b.pem", "--client-ca", "ca.pem",
                    "--request-timeout", "2.5", "--keepalive-interval", "3",
                    "--keepalive-timeout", "1", "--auth-timeout", "4",
                    "--max-line-length", "1000", "--interface", "127.0.0.1",
                    "--max-buffered-bytes", "0", "--auth-failure-delay", "0.5",
                    "--auth-failure-max-delay", "9")
    assert options["port"] == 8888
    assert options["chain"] == ["a.pem", "b.pem"]
    assert options["client-ca"] == ["ca.pem"]
    assert (options["request-timeout"], options["keepalive-interval"],
            options["keepalive-timeout"], options["auth-timeout"],
            options["max-line-length"]) == (2.5, 3.0, 1.0, 4.0, 1000)
    assert (options["max-buffered-bytes"], options["auth-failure-delay"],
            options["auth-failure-max-delay"]) == (0, 0.5, 9.0)


def test_listenForm() -> None:
    """
    Twisted's form: --listen, repeatable, any endpoint string.
    """
    options = parse("--listen", "ssl:8888:privateKey=k:certKey=c", "--listen", "tcp:9999")
    assert options["listen"] == ["ssl:8888:privateKey=k:certKey=c", "tcp:9999"]
    assert options["port"] is None


def test_devDefaults() -> None:
    """
    --dev fills in the checkout's development certificate and password, on
    127.0.0.1:8888.
    """
    options = parse("--dev")
    assert (options["port"], options["interface"]) == (8888, "127.0.0.1")
    assert (parse("--dev", "--port", "0")["port"], options["interface"]) == (0, "127.0.0.1")
    listening = parse("--dev", "--listen", "tcp:0")
    assert listening["cert"] is None and listening["port"] is None
    assert listening["password-file"] == str(Path("certs") / "dev-password")
    assert options["cert"] == str(Path("certs") / "localhost.crt")
    assert options["password-file"] == str(Path("certs") / "dev-password")


@pytest.mark.parametrize("argv, message", [
    ((), "nowhere to listen"),
    (("--port", "8888"), "--port needs --cert FILE and --key FILE"),
    (("--port", "8888", "--cert", "c"), "--port needs --cert FILE and --key FILE"),
    (("--port", "0x"), r"--port must be a port number from 0 to 65535 \(0 picks a free one\), "
                       "not '0x'"),
    (("--port", "70000", "--cert", "c", "--key", "k"), "--port must be a port number"),
    (("--port", "-1", "--cert", "c", "--key", "k"), "--port must be a port number"),
    (("--listen", "tcp:1", "--cert", "c"), "go with --port"),
    (("--listen", "tcp:1", "--request-timeout", "-1"),
     "--request-timeout must be a number of seconds >= 0, not -1.0"),
    (("--listen", "tcp:1", "--request-timeout", "soon"),
     "--request-timeout must be a number of seconds >= 0, not 'soon'"),
    (("--listen", "tcp:1", "--keepalive-timeout", "0"),
     "--keepalive-timeout must be > 0 when --keepalive-interval is set"),
    (("--listen", "tcp:1", "--max-line-length", "0"),
     "--max-line-length must be a number of bytes >= 1"),
    (("--listen", "tcp:1", "--max-buffered-bytes", "-5"),
     "--max-buffered-bytes must be a number of bytes >= 0"),
    (("--listen", "tcp:1", "--auth-failure-delay", "-1"),
     "--auth-failure-delay must be a number of seconds >= 0"),
    (("--listen", "tcp:1", "--password", "hunter2"), "never taken on the command line"),
    (("--port", "0", "--cert", "c", "--key", "k", "--workers", "0"),
     "--workers must be a number of worker processes >= 1"),
    (("--listen", "tcp:1", "--workers", "2"), "--workers serves --port"),
    (("--port", "0", "--cert", "c", "--key", "k", "--listen", "tcp:1", "--workers", "2"),
     "--workers serves --port"),
])
def test_usageErrors(argv: Any, message: str) -> None:
    """
    Options that do not fit together are refused with a message naming the
    problem.
    """
    with pytest.raises(usage.UsageError, match=message):
        parse(*argv)


def test_passwordNeverOnCommandLineEvenAsEquals() -> None:
    """
    --password=... is refused too.
    """
    with pytest.raises(usage.UsageError, match="never taken on the command line"):
        parse("--listen", "tcp:1", "--password=hunter2")


@pytest.mark.parametrize("make, message", [
    (lambda pki, pw, tmp: ["--port", "1", "--cert", str(tmp / "nope.crt"), "--key",
                           str(pki.serverKey), "--password-file", pw],
     "cannot read certificate file"),
    (lambda pki, pw, tmp: ["--port", "1", "--cert", str(pki.serverCert), "--key",
                           str(tmp / "nope.key"), "--password-file", pw],
     "cannot read private key file"),
    (lambda pki, pw, tmp: ["--port", "1", "--cert", str(pki.serverCert), "--key",
                           str(pki.clientKey), "--password-file", pw],
     "does not match certificate"),
    (lambda pki, pw, tmp: ["--listen", "nonsense:1", "--password-file", pw],
     "bad --listen endpoint 'nonsense:1'"),
    (lambda pki, pw, tmp: ["--listen", "ssl:1:privateKey=/nonexistent", "--password-file", pw],
     "bad --listen endpoint"),
    (lambda pki, pw, tmp: ["--listen", "tcp:1"], "no password"),
    (lambda pki, pw, tmp: ["--listen", "tcp:1", "--password-file", str(tmp / "nope")],
     "cannot read password file"),
    (lambda pki, pw, tmp: ["--listen", "tcp:1", "--password-file", pw, "--handler", "nomodule"],
     "package.module:name"),
])
def test_makeServiceErrors(pki: PKI, passwordFile: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, make: Any, message: str) -> None:
    """
    Problems found when building the service end the process with a
    one-line message (SystemExit), never a traceback; the password is not
    in it.
    """
    monkeypatch.delenv(PASSWORD_ENVIRONMENT_VARIABLE, raising=False)
    options = parse(*make(pki, passwordFile, tmp_path))
    with pytest.raises(SystemExit) as info:
        makeService(options)
    text = str(info.value.code)
    assert text.startswith("twistd tlsjson: ")
    assert message in text
    assert "\n" not in text
    assert "s3cret" not in text


def test_passwordFromEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without --password-file the password comes from TLSJSON_PASSWORD.
    """
    monkeypatch.setenv(PASSWORD_ENVIRONMENT_VARIABLE, "from-env")
    service = makeService(parse("--listen", "tcp:0:interface=127.0.0.1"))
    authenticator = service.server.factory.authenticator  # type: ignore[attr-defined]
    assert authenticator("from-env", None) is not None
    assert authenticator("from-en", None) is None


def test_loadPassword(tmp_path: Path) -> None:
    """
    One trailing newline is removed from a password file; an empty file is
    refused.
    """
    path = tmp_path / "pw"
    path.write_bytes(b" pass word \r\n")
    assert loadPassword(path) == " pass word "
    path.write_bytes(b"\n")
    with pytest.raises(PasswordError, match="empty"):
        loadPassword(path)
    with pytest.raises(PasswordError, match="TLSJSON_PASSWORD"):
        loadPassword(None, environ={})


@pytest.fixture
def handlerModule() -> Iterator[types.ModuleType]:
    """
    A module importable as C{fakehandlers}, with handlers of each kind.
    """
    module = types.ModuleType("fakehandlers")

    class Counter:
        def __init__(self, server: Server) -> None:
            self.server = server
            self.messages: List[Any] = []

        def authenticated(self, connectionId: int, peer: Any) -> None:
            self.server.send(connectionId, {"welcome": connectionId})

        def message(self, connectionId: int, message: Any) -> None:
            self.messages.append(message)

        async def request(self, connectionId: int, request: Any) -> Any:
            return {"count": len(self.messages), "got": request}

    class Plain:
        def request(self, connectionId: int, request: Any) -> Any:
            return {"plain": True}

    module.Counter = Counter  # type: ignore[attr-defined]
    module.plain = Plain()  # type: ignore[attr-defined]
    module.notAHandler = 42  # type: ignore[attr-defined]
    module.badFactory = lambda server: "nothing"  # type: ignore[attr-defined]
    module.brokenFactory = lambda server: 1 / 0  # type: ignore[attr-defined]
    sys.modules["fakehandlers"] = module
    yield module
    del sys.modules["fakehandlers"]


def test_loadHandlerKinds(handlerModule: Any) -> None:
    """
    A handler object is used as it is; a factory is called with the server.
    """
    server = Server("pw")
    assert loadHandler("fakehandlers:plain", server) is handlerModule.plain
    made = loadHandler("fakehandlers:Counter", server)
    assert isinstance(made, handlerModule.Counter) and made.server is server


@pytest.mark.parametrize("spec, message", [
    ("fakehandlers", "must look like package.module:name"),
    ("no_such_module_xyz:thing", "cannot import handler module"),
    ("fakehandlers:missing", "has no 'missing'"),
    ("fakehandlers:notAHandler", "neither a handler"),
    ("fakehandlers:badFactory", "returned 'nothing'"),
    ("fakehandlers:brokenFactory", "ZeroDivisionError"),
])
def test_loadHandlerErrors(handlerModule: Any, spec: str, message: str) -> None:
    """
    Every way a --handler can be wrong gives a one-line explanation.
    """
    with pytest.raises(HandlerError, match=message):
        loadHandler(spec, Server("pw"))


async def _serviceRoundTrip(pki: PKI, passwordFile: str, argv: List[str]) -> Any:
    from twisted.internet import reactor

    service = makeService(parse(*argv, "--password-file", passwordFile))
    assert isinstance(service, TLSJSONService)
    service.privilegedStartService()
    service.startService()
    try:
        client = Client("localhost", service.server.port, "s3cret",  # type: ignore[arg-type]
                        ca=[pki.caCert], reactor=reactor)
        messages: List[Any] = []
        client.on("message", messages.append)
        await client.connect()
        client.send({"note": 1})
        result = await client.request({"hello": "world"})
        await client.disconnect()
        return result, messages
    finally:
        stopped = service.stopService()
        assert stopped is not None
        await stopped


@inReactor
async def test_serviceServesPortForm(pki: PKI, passwordFile: str) -> None:
    """
    makeService's service, started in-process on port 0, serves a client
    over TLS with the built-in echo handler.
    """
    result, _ = await _serviceRoundTrip(pki, passwordFile, [
        "--port", "0", "--cert", str(pki.serverCert), "--key", str(pki.serverKey),
        "--interface", "127.0.0.1"])
    assert result == {"hello": "world"}


@inReactor
async def test_serviceServesListenForm(pki: PKI, passwordFile: str, handlerModule: Any) -> None:
    """
    The --listen form with an ssl: endpoint string and a --handler factory.
    """
    result, messages = await _serviceRoundTrip(pki, passwordFile, [
        "--listen", f"ssl:0:interface=127.0.0.1:privateKey={pki.serverKey}:certKey={pki.serverCert}",
        "--handler", "fakehandlers:Counter"])
    assert result == {"count": 1, "got": {"hello": "world"}}
    assert messages == [{"welcome": 0}]


@inReactor
async def test_portInUse(pki: PKI, passwordFile: str) -> None:
    """
    A port in use stops the service with one line: SystemExit under
    C{twistd -n}, L{ListenFailed} (reported to the parent) when daemonizing.
    """
    holder = Server("x", certificate=pki.serverCert, privateKey=pki.serverKey)
    await holder.listen(0, "127.0.0.1")
    try:
        argv = ["--listen", f"tcp:{holder.port}:interface=127.0.0.1",
                "--password-file", passwordFile]
        service = makeService(parse(*argv))
        with pytest.raises(SystemExit, match=f"cannot listen on tcp:{holder.port}.*in use"):
            service.privilegedStartService()
        options = parse(*argv)

        class Parent(dict):  # type: ignore[type-arg]
            pass

        options.parent = Parent(nodaemon=False)  # type: ignore[assignment]  # twistd's parent
        with pytest.raises(ListenFailed, match="in use"):
            makeService(options).privilegedStartService()
    finally:
        await holder.close()


def test_echoHandler() -> None:
    """
    The built-in handler answers a request with its own payload.
    """
    assert EchoHandler().request(3, {"a": [1]}) == {"a": [1]}


def test_echoHandlerDoesNotFloodTheLog() -> None:
    """
    The built-in handler logs the first messages, then a count of the
    others every interval; its timer runs only while messages come.
    """
    from twisted.internet.task import Clock
    from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
    from zope.interface import provider

    clock = Clock()
    handler = EchoHandler(clock, logFirst=3, interval=10)
    lines: List[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        for n in range(8):
            handler.message(1, {"n": n})
        clock.advance(10)
        handler.message(1, {"n": 8})
        clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert lines[:3] == [f"message from client 1: {{'n': {n}}}" for n in range(3)]
    assert lines[3:] == [
        "further messages are counted, not logged: a count every 10 seconds",
        "5 more messages in the last 10 seconds",
        "1 more messages in the last 10 seconds"]
    assert clock.getDelayedCalls() == []


def test_lateListenFailureLogged() -> None:
    """
    An endpoint that fails to listen only later (not by the time the
    service starts) has its failure logged, not lost.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.error import CannotListenError
    from twisted.internet.task import Clock
    from twisted.logger import ILogObserver, globalLogPublisher

    from txtlsjson import Server

    later: Deferred[Any] = Deferred()

    class LaterEndpoint:
        def listen(self, factory: Any) -> "Deferred[Any]":
            return later

    logged: List[Any] = []
    observer = cast(ILogObserver, logged.append)
    globalLogPublisher.addObserver(observer)
    try:
        service = TLSJSONService(Server("pw", reactor=Clock()), [("later:1", LaterEndpoint())])  # type: ignore[list-item]
        service.startService()
        later.errback(CannotListenError("127.0.0.1", 1, OSError("in use")))
    finally:
        globalLogPublisher.removeObserver(observer)
    failures = [event for event in logged if "log_failure" in event]
    assert len(failures) == 1 and failures[0]["description"] == "later:1"
    assert failures[0]["log_failure"].check(CannotListenError)

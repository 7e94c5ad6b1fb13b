"""
C{tlsjson}: a command-line client for tls-json servers, and a maker of
development certificates.

  tlsjson request --host H --port P --ca CA.pem --password-file F '{"hello": "world"}'
  tlsjson send ... '{"event": "started"}'
  tlsjson listen ...
  tlsjson certs --cn localhost --out certs
  tlsjson credentials add NAME FILE      (prints the new client's secret once)
  tlsjson credentials remove NAME FILE
  tlsjson credentials list FILE

C{request} and C{send} read JSON lines from standard input when given no
message (or C{-}); each line is one request or message.  Exit codes:
0 success, 1 other error, 2 usage, 3 connection failed, 4 authentication
failed, 5 timeout, 6 bad input JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, List, NoReturn, Optional, Sequence, TextIO

from txtlsjson.errors import CommandError, InvalidSetting
from txtlsjson.settings import FACTOR, FRACTION, POSITIVE_SECONDS, PORT, SECONDS, ClientSettings, Kind

if TYPE_CHECKING:
    from txtlsjson.client import Client

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_AUTHENTICATION = 4
EXIT_TIMEOUT = 5
EXIT_BAD_INPUT = 6


def _argument(kind: Kind) -> Callable[[str], Any]:
    """
    An argparse C{type} reading a value as the settings' C{kind} does
    (argparse's message names the option).
    """
    def parse(text: str) -> Any:
        try:
            return kind.fromString("", text)
        except InvalidSetting:
            raise argparse.ArgumentTypeError(kind.complaint(text)) from None

    return parse


def _days(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a number of days >= 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlsjson",
        description="Talk to a tls-json server from a shell, make development "
                    "certificates, or edit a per-client credentials file.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 connection failed, "
               "4 authentication failed, 5 timeout, 6 bad input JSON.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def connection(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--host", default="localhost", help="server host (default: localhost)")
        sub.add_argument("--port", type=_argument(PORT), default=8888,
                         help="server port (default: 8888)")
        sub.add_argument("--ca", action="append", metavar="PEM",
                         help="CA certificate(s) to trust (repeatable; default: the system's)")
        sub.add_argument("--server-name", metavar="NAME",
                         help="name the server certificate must carry (default: --host)")
        sub.add_argument("--client-cert", metavar="PEM", help="client certificate (mutual TLS)")
        sub.add_argument("--client-key", metavar="PEM", help="its key (default: in --client-cert)")
        sub.add_argument("--password-file", metavar="FILE",
                         help="file holding the password (default: $TLSJSON_PASSWORD)")
        sub.add_argument("--dev", action="store_true",
                         help="trust twistd tlsjson --dev's certificate and use its "
                              "password (a checkout's certs/, or the per-user ones)")
        sub.add_argument("--timeout", type=_argument(POSITIVE_SECONDS),
                         default=ClientSettings().requestTimeout, metavar="SECONDS",
                         help="connect and request timeout (default: 10)")

    request = commands.add_parser(
        "request", help="send requests, print their responses as JSON lines")
    connection(request)
    request.add_argument("message", nargs="?", default="-",
                         help="the request as a JSON object (default: JSON lines from stdin)")
    send = commands.add_parser("send", help="send messages")
    connection(send)
    send.add_argument("message", nargs="?", default="-",
                      help="the message as a JSON object (default: JSON lines from stdin)")
    listen = commands.add_parser(
        "listen", help="stay connected (reconnecting) and print each message as a JSON line")
    connection(listen)
    # A listener is meant to stay: unlike a Client's default (never), it
    # reconnects.
    listen.add_argument("--reconnect-interval", type=_argument(SECONDS),
                        default=2.0, metavar="SECONDS",
                        help="seconds between reconnection attempts (default: 2)")
    listen.add_argument("--reconnect-factor", type=_argument(FACTOR), default=1.0,
                        metavar="N", help="each further attempt waits N times longer "
                                          "(default: 1, a constant interval)")
    listen.add_argument("--reconnect-jitter", type=_argument(FRACTION), default=0.0,
                        metavar="F", help="vary each wait at random by this fraction "
                                          "(default: 0)")
    listen.add_argument("--reconnect-max-delay", type=_argument(SECONDS), default=30.0,
                        metavar="SECONDS", help="the longest wait once it grows (default: 30)")

    publish = commands.add_parser(
        "publish", help="send a message to clients of a cluster (twistd tlsjson --nats) "
                        "through NATS, without being a node")
    publish.add_argument("--nats", action="append", required=True, metavar="URL",
                         help="a NATS server of the cluster (repeatable)")
    publish.add_argument("--nats-prefix", default="tlsjson", metavar="PREFIX",
                         help="the cluster's subject prefix (default: tlsjson)")
    publish.add_argument("--nats-credentials", metavar="FILE",
                         help="NATS credentials file (default: $TLSJSON_NATS_TOKEN, or "
                              "$TLSJSON_NATS_USER and $TLSJSON_NATS_PASSWORD)")
    publish.add_argument("--nats-ca", metavar="PEM", help="CA to verify a tls:// NATS server")
    publish.add_argument("--timeout", type=_argument(POSITIVE_SECONDS), default=10.0,
                         metavar="SECONDS", help="connect and answer timeout (default: 10)")
    target = publish.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=int, metavar="ID", help="the client with this id")
    target.add_argument("--room", metavar="ROOM", help="every client in this room")
    target.add_argument("--all", action="store_true", help="every client")
    publish.add_argument("message", help="the message, a JSON object")

    certs = commands.add_parser(
        "certs", help="write a self-signed development key and certificate")
    certs.add_argument("--cn", default="localhost", help="common name (default: localhost)")
    certs.add_argument("--san", action="append", metavar="NAME",
                       help="subjectAltName, DNS name or IP (repeatable; default: the CN, "
                            "and 127.0.0.1 and ::1 for localhost)")
    certs.add_argument("--out", default=".", metavar="DIR", help="directory (default: .)")
    certs.add_argument("--name", help="file name stem (default: the CN)")
    # No default here: certs.DEFAULT_KEY_TYPE, read when the command runs
    # (cryptography is not imported for the other commands).
    certs.add_argument("--key-type", choices=["ecdsa", "rsa"],
                       help="ECDSA P-256 (the default) or RSA 2048, for peers that cannot "
                            "use ECDSA")
    certs.add_argument("--days", type=_days, default=3650, metavar="DAYS",
                       help="validity (default: 3650)")
    certs.add_argument("--force", action="store_true", help="overwrite existing files")

    credentials = commands.add_parser(
        "credentials", help="edit a per-client credentials file (twistd tlsjson --credentials)")
    actions = credentials.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a client with a fresh secret, printed once")
    remove = actions.add_parser("remove", help="remove a client (a server reloads on SIGHUP)")
    for sub in (add, remove):
        sub.add_argument("name", help="the client's name (letters, digits and _.@+-)")
        sub.add_argument("file", help="the credentials file (made by add if missing)")
    listing = actions.add_parser("list", help="list the clients' names")
    listing.add_argument("file", help="the credentials file")
    return parser


def parseJSONObject(text: str, where: str) -> Any:
    """
    Parse C{text} as a JSON object for sending.

    @raise CommandError: with L{EXIT_BAD_INPUT} if it is not one.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise CommandError(f"{where} is not valid JSON: {e}", EXIT_BAD_INPUT) from None
    if not isinstance(value, dict):
        raise CommandError(f"{where} is not a JSON object", EXIT_BAD_INPUT)
    return value


def _messages(argument: str, stdin: TextIO) -> Any:
    """
    Yield the objects to send: the argument, or each non-blank stdin line.
    """
    if argument != "-":
        yield parseJSONObject(argument, "the message")
        return
    for number, line in enumerate(stdin, 1):
        if line.strip():
            yield parseJSONObject(line, f"stdin line {number}")


def _writeCertificates(args: argparse.Namespace, out: TextIO) -> int:
    from txtlsjson.certs import DEFAULT_KEY_TYPE, makeCertificate, writeKeyPair

    names = args.san
    if names is None:
        names = [args.cn] + (["127.0.0.1", "::1"] if args.cn == "localhost" else [])
    try:
        key, certificate = makeCertificate(args.cn, names, days=args.days,
                                           keyType=args.key_type or DEFAULT_KEY_TYPE)
        keyPath, certPath = writeKeyPair(args.out, args.name or args.cn, key, certificate,
                                         force=args.force)
    except (FileExistsError, OSError, ValueError) as e:
        raise CommandError(str(e), EXIT_ERROR) from None
    out.write(f"wrote {keyPath} and {certPath} (subjectAltName: {', '.join(names)})\n")
    return EXIT_OK


def _editCredentials(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from txtlsjson.credentials import addCredential, readCredentials, removeCredential
    from txtlsjson.errors import CredentialsError

    try:
        if args.action == "add":
            secret = addCredential(args.file, args.name)
            out.write(f"{secret}\n")
            err.write(f"tlsjson: added {args.name!r} to {args.file}; its secret is above, shown this "
                      "once: give it to the client as its password (in a file or TLSJSON_PASSWORD), "
                      "then SIGHUP a running server\n")
        elif args.action == "remove":
            removeCredential(args.file, args.name)
            err.write(f"tlsjson: removed {args.name!r} from {args.file}; SIGHUP a running server "
                      "to close its connection\n")
        else:
            names = sorted(credential.name for credential in readCredentials(args.file).values())
            out.writelines(f"{name}\n" for name in names)
    except (CredentialsError, OSError) as e:
        raise CommandError(str(e), EXIT_ERROR) from None
    return EXIT_OK


def _exitCodeFor(error: BaseException) -> int:
    from twisted.internet.defer import CancelledError
    from twisted.internet.error import TimeoutError as TCPTimeoutError

    from txtlsjson.errors import (
        AuthenticationFailed,
        ConnectionFailed,
        ConnectionLost,
        IdleTimeout,
        InvalidOutgoingMessage,
        NotConnected,
        RequestTimeout,
        TLSConfigurationError,
    )

    if isinstance(error, AuthenticationFailed):
        return EXIT_AUTHENTICATION
    if isinstance(error, (RequestTimeout, IdleTimeout, CancelledError, TCPTimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(error, ConnectionFailed):
        return EXIT_TIMEOUT if error.reason.check(TCPTimeoutError) else EXIT_CONNECTION
    if isinstance(error, (ConnectionLost, NotConnected)):
        return EXIT_CONNECTION
    if isinstance(error, InvalidOutgoingMessage):
        return EXIT_BAD_INPUT
    if isinstance(error, TLSConfigurationError):
        return EXIT_ERROR
    return EXIT_ERROR


async def _publish(reactor: Any, args: argparse.Namespace) -> int:
    """
    C{tlsjson publish}: one message to a client, a room or everyone of a
    cluster, through NATS.
    """
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    from txtlsjson.cluster import Cluster, natsOptions
    from txtlsjson.errors import NotConnected

    for url in args.nats:
        if "@" in url.partition("://")[2].partition("/")[0]:
            raise CommandError("NATS credentials are never taken on the command line; use "
                               "--nats-credentials FILE or the environment", EXIT_USAGE)
    message = parseJSONObject(args.message, "the message")
    try:
        import nats  # noqa: F401  (the cluster extra)
    except ImportError:
        raise CommandError("publish needs the NATS client: pip install 'txtlsjson[cluster]'",
                           EXIT_USAGE) from None
    cluster = Cluster(args.nats, prefix=args.nats_prefix, reactor=reactor,
                      options=natsOptions(args.nats_credentials, args.nats_ca))
    try:
        try:
            await cluster.startPublishing().addTimeout(args.timeout, reactor)
        except DeferredTimeout:
            raise CommandError(f"cannot reach NATS at {', '.join(args.nats)} within "
                               f"{args.timeout:g} seconds", EXIT_CONNECTION) from None
        if args.to is not None:
            try:
                await cluster.sendConfirmed(args.to, message)
            except NotConnected:
                raise CommandError(f"no node holds client {args.to}", EXIT_CONNECTION) from None
        elif args.room is not None:
            cluster.sendToRoom(args.room, message, ())
        else:
            cluster.broadcast(message, ())
    finally:
        await cluster.stop()
    return EXIT_OK


async def _run(reactor: Any, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    if args.command == "publish":
        return await _publish(reactor, args)

    from txtlsjson.client import Client
    from txtlsjson.errors import PasswordError
    from txtlsjson.password import loadPassword
    from txtlsjson.tls import clientTLSOptions

    if args.dev:
        from txtlsjson.dev import devFiles

        try:
            files = devFiles()
        except OSError as e:
            raise CommandError(f"--dev cannot make its files: {e}", EXIT_ERROR) from None
        args.ca = args.ca or [str(files.certificate)]
        if args.password_file is None and not os.environ.get("TLSJSON_PASSWORD"):
            args.password_file = str(files.passwordFile)
    try:
        password = loadPassword(args.password_file)
    except PasswordError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if args.command != "listen" and args.message != "-":
        # Refuse bad input before connecting.
        parseJSONObject(args.message, "the message")
    tlsOptions = clientTLSOptions(args.server_name or args.host, args.ca, args.client_cert,
                                  args.client_key)
    client = Client(args.host, args.port, password, tlsOptions=tlsOptions,
                    requestTimeout=args.timeout, connectTimeout=args.timeout,
                    reconnectInterval=args.reconnect_interval if args.command == "listen" else 0,
                    **({"reconnectFactor": args.reconnect_factor,
                        "reconnectJitter": args.reconnect_jitter,
                        "reconnectMaxDelay": args.reconnect_max_delay}
                       if args.command == "listen" else {}),
                    reactor=reactor)
    errors: List[BaseException] = []
    client.on("error", errors.append)

    def printLine(value: Any) -> None:
        out.write(json.dumps(value, ensure_ascii=False) + "\n")
        out.flush()

    if args.command == "listen":
        return await _listen(reactor, client, args, printLine)

    try:
        try:
            await client.connect().addTimeout(args.timeout, reactor)
        except DeferredTimeout:
            raise CommandError(
                f"no answer from {args.host}:{args.port} within {args.timeout:g} seconds "
                "(connecting, TLS or password)", EXIT_TIMEOUT) from None
        for message in _messages(args.message, stdin):
            if args.command == "request":
                printLine(await client.request(message))
            else:
                client.send(message)
                if errors:
                    raise errors[0]
    finally:
        await client.disconnect()
    return EXIT_OK


async def _listen(reactor: Any, client: "Client", args: argparse.Namespace,
                  printLine: Callable[[Any], None]) -> int:
    """
    Print messages until interrupted (SIGINT/SIGTERM), reconnecting as
    needed; exit cleanly then.
    """
    from twisted.internet.defer import Deferred

    stopped: Deferred[int] = Deferred()

    def stop() -> "Deferred[None]":
        if not stopped.called:
            stopped.callback(EXIT_OK)
        return client.disconnect()

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    client.on("message", printLine)
    client.on("authenticated", lambda: _note(f"connected to {args.host}:{args.port}"))
    client.on("close", lambda: _note("connection closed"))
    client.on("error", lambda e: _note(str(e)))
    def gaveUp(failure: Any) -> None:
        # Only a refused password or disconnect() end the reconnecting.
        if not stopped.called:
            stopped.errback(failure)

    client.connect().addErrback(gaveUp)
    return await stopped


def _note(text: str) -> None:
    sys.stderr.write(f"tlsjson: {text}\n")
    sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None, stdin: TextIO = sys.stdin,
         out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         exit: Callable[[int], NoReturn] = sys.exit) -> None:
    """
    Run the C{tlsjson} command.
    """
    args = _parser().parse_args(argv)
    if args.command in ("certs", "credentials"):
        try:
            code = (_writeCertificates(args, out) if args.command == "certs"
                    else _editCredentials(args, out, err))
        except CommandError as e:
            err.write(f"tlsjson: {e}\n")
            code = e.code
        exit(code)
        return

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    outcome: List[int] = []

    def finish(result: Any) -> None:
        if outcome:
            return
        if isinstance(result, int):
            outcome.append(result)
        else:
            error = result.value
            code = error.code if isinstance(error, CommandError) else _exitCodeFor(error)
            err.write(f"tlsjson: {error}\n")
            outcome.append(code)
        if reactor.running:
            reactor.stop()

    def start() -> None:
        ensureDeferred(_run(reactor, args, stdin, out)).addBoth(finish)

    reactor.callWhenRunning(start)
    reactor.run()
    exit(outcome[0] if outcome else EXIT_ERROR)

"""
C{twistd tlsjson}: the options and service of the twistd plugin.

Two ways to say where to listen, which may be combined:

  - the design card's form: C{--port 8888 --cert server.crt --key server.key};
  - Twisted's: C{--listen ssl:8888:privateKey=server.key:certKey=server.crt},
    repeatable, any server endpoint string (as C{twistd web --listen}).

The shared password comes from C{--password-file} or the
C{TLSJSON_PASSWORD} environment variable, never from the command line; or,
with C{--credentials FILE}, each client has its own secret (see
L{txtlsjson.credentials}), and C{SIGHUP} reloads the file.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

from twisted.application.service import IService
from twisted.python import usage

from txtlsjson.dev import DevFiles, devFiles
from txtlsjson.errors import InvalidSetting
from txtlsjson.settings import LISTEN_PORT, WORKERS, Kind, ServerSettings

if TYPE_CHECKING:
    from txtlsjson.server import Server
    from txtlsjson.service import TLSJSONService

#: Where C{--dev} listens (its files: L{txtlsjson.dev}).
DEV_PORT = 8888
DEV_INTERFACE = "127.0.0.1"


def _coerce(option: str, kind: Kind) -> Callable[[str], Any]:
    """
    A C{usage} coerce function reading C{--option} as C{kind} says.
    """
    def coerce(text: str) -> Any:
        return kind.fromString(f"--{option}", text)

    return coerce


def _settingOptions() -> List[List[Any]]:
    """
    The C{optParameters} of the L{ServerSettings} that have an option: their
    names, defaults, help and checks are those of the settings.
    """
    parameters: List[List[Any]] = []
    for spec in ServerSettings.specifications():
        option = spec.metadata["option"]
        if option is not None:
            help = spec.metadata["help"]
            parameters.append([option, None, spec.default, help[0].upper() + help[1:] + ".",
                               _coerce(option, spec.metadata["kind"])])
    return parameters


class Options(usage.Options):
    """
    Options of C{twistd tlsjson}.
    """

    synopsis = "[--port PORT --cert FILE --key FILE | --listen ENDPOINT ...] [options]"
    longdesc = (
        "Run a tls-json server: JSON messages both ways over TLS after a password "
        "exchange, compatible with the Node.js package tls-json. The password is read "
        "from --password-file or the TLSJSON_PASSWORD environment variable; with "
        "--credentials, each client has its own secret. Without "
        "--handler, requests are answered with their own payload and the first messages "
        "logged, then counted.")

    optFlags = [
        ["dev", None,
         "Development defaults: a checkout's certs/ files, or elsewhere a throwaway "
         "certificate and password made on first use in ~/.local/share/txtlsjson/dev; "
         f"listening on {DEV_INTERFACE}:{DEV_PORT}. "
         "Never use them in production."],
    ]
    optParameters: List[List[Any]] = [
        ["port", "p", None, "TCP port to listen on with TLS (with --cert and --key; "
         "0 picks a free one, which is logged).", _coerce("port", LISTEN_PORT)],
        ["interface", "i", "", "Address to bind --port to (default: all)."],
        ["cert", "c", None, "PEM file of the server certificate (its chain may follow)."],
        ["key", "k", None, "PEM file of the server's unencrypted private key."],
        ["password-file", None, None,
         "File holding the password (default: the TLSJSON_PASSWORD environment variable)."],
        ["credentials", None, None,
         "File of per-client secrets, instead of one shared password (edit it with "
         "'tlsjson credentials add NAME FILE'); SIGHUP reloads it and closes revoked "
         "clients' connections."],
        ["handler", None, None,
         "The application: package.module:name of a handler, or of a callable taking "
         "the Server and returning one (see txtlsjson.handler)."],
        ["nats-credentials", None, None,
         "NATS credentials file (.creds) for --nats (default: $TLSJSON_NATS_TOKEN, or "
         "$TLSJSON_NATS_USER and $TLSJSON_NATS_PASSWORD)."],
        ["nats-ca", None, None, "PEM file of the CA to verify a tls:// NATS server with."],
        ["nats-prefix", None, "tlsjson", "First token of the cluster's NATS subjects."],
        ["metrics", None, None,
         "Serve Prometheus metrics on this server endpoint, e.g. tcp:9100:interface=127.0.0.1 "
         "(needs pip install 'txtlsjson[metrics]')."],
        ["workers", None, 1,
         "Worker processes serving --port: this process binds the socket and each worker "
         "accepts connections on it (1: serve in this process).", _coerce("workers", WORKERS)],
    ]
    optParameters.extend(_settingOptions())

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["chain"] = []
        self["client-ca"] = []
        self["nats"] = []
        #: The arguments parsed, for workers to parse again.
        self.arguments: List[str] = []

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse C{options} (the command line's by default), keeping them.
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(self.arguments)  # type: ignore[no-untyped-call]

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted server endpoint, e.g. ssl:8888:privateKey=server.key:certKey=server.crt (repeatable)."""
        self["listen"].append(description)

    def opt_chain(self, path: str) -> None:
        """PEM file of intermediate certificates to send with --cert (repeatable)."""
        self["chain"].append(path)

    def opt_client_ca(self, path: str) -> None:
        """Require client certificates (mutual TLS) issued by the CA in this PEM file, on --port (repeatable)."""
        self["client-ca"].append(path)

    def opt_nats(self, url: str) -> None:
        """Join a cluster through this NATS server, e.g. nats://127.0.0.1:4222 (repeatable)."""
        if "@" in url.partition("://")[2].partition("/")[0]:
            raise usage.UsageError(
                "NATS credentials are never taken on the command line; use "
                "--nats-credentials FILE or TLSJSON_NATS_TOKEN / TLSJSON_NATS_USER and "
                "TLSJSON_NATS_PASSWORD")
        self["nats"].append(url)

    def opt_password(self, value: str) -> None:
        """Refused: a password on the command line shows in ps and shell history."""
        raise usage.UsageError(
            "the password is never taken on the command line; "
            "use --password-file FILE or the TLSJSON_PASSWORD environment variable")

    def postOptions(self) -> None:
        """
        Fill in --dev defaults and check that the options fit together.
        """
        self.devFiles = None
        if self["dev"]:
            try:
                files = self.devFiles = devFiles()
            except OSError as e:
                raise usage.UsageError(f"--dev cannot make its files: {e}") from None
            if not self["listen"] and self["port"] is None:
                self["port"] = DEV_PORT
            if self["port"] is not None:
                self["interface"] = self["interface"] or DEV_INTERFACE
                self["cert"] = self["cert"] or str(files.certificate)
                self["key"] = self["key"] or str(files.key)
            if not self["credentials"]:
                self["password-file"] = self["password-file"] or str(files.passwordFile)
        if self["credentials"] and self["password-file"]:
            raise usage.UsageError(
                "--credentials gives each client its own secret; it replaces --password-file")
        if self["port"] is None and not self["listen"]:
            raise usage.UsageError(
                "nowhere to listen: give --port PORT with --cert and --key, "
                "or --listen ENDPOINT (or --dev)")
        if self["port"] is not None:
            if not self["cert"] or not self["key"]:
                raise usage.UsageError("--port needs --cert FILE and --key FILE")
        elif self["cert"] or self["key"] or self["chain"] or self["client-ca"]:
            raise usage.UsageError(
                "--cert, --key, --chain and --client-ca go with --port; an ssl: --listen "
                "endpoint names its own files")
        if self["workers"] > 1 and (self["listen"] or self["port"] is None):
            raise usage.UsageError(
                "--workers serves --port (with --cert and --key); --listen endpoints are "
                "listened on by one process")
        try:
            self.settings = self._settings()
        except InvalidSetting as e:
            raise usage.UsageError(str(e)) from None

    def _settings(self) -> ServerSettings:
        """
        The L{ServerSettings} the options give (checked once more as a
        whole: some settings depend on others).
        """
        values = {}
        options = {}
        for spec in ServerSettings.specifications():
            option = spec.metadata["option"]
            if option is not None:
                values[spec.name] = self[option]
                options[spec.name] = f"--{option}"
        try:
            return ServerSettings(**values)
        except InvalidSetting as e:
            # Said with the options' names, not the settings'.
            message = str(e)
            for name, option in options.items():
                message = re.sub(rf"\b{name}\b", option, message)
            raise InvalidSetting(message) from None


def _fail(message: str) -> SystemExit:
    return SystemExit(f"twistd tlsjson: {message}")


def makeService(options: Options) -> IService:
    """
    Build the service from parsed options: the server in this process, or,
    with C{--workers} above 1, the pool of worker processes serving it.

    Problems only found now -- no password, unreadable files, a bad endpoint
    string, a handler that cannot be loaded -- end the process with a
    one-line message (C{SystemExit}) rather than a traceback.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString

    from txtlsjson.errors import HandlerError, PasswordError, TLSConfigurationError
    from txtlsjson.handler import findHandler
    from txtlsjson.password import loadPassword
    from txtlsjson.server import DEFAULT_BACKLOG
    from txtlsjson.service import TLSJSONService
    from txtlsjson.tls import serverTLSOptions

    password: Optional[str] = None
    if options["credentials"]:
        from txtlsjson.credentials import readCredentials
        from txtlsjson.errors import CredentialsError

        try:
            readCredentials(options["credentials"])
        except CredentialsError as e:
            raise _fail(str(e)) from None
    else:
        try:
            password = loadPassword(options["password-file"])
        except PasswordError as e:
            raise _fail(str(e)) from None

    endpoints: List[Tuple[str, Any]] = []
    tlsOptions: Any = None
    if options["port"] is not None:
        try:
            tlsOptions = serverTLSOptions(options["cert"], options["key"], options["chain"],
                                          options["client-ca"] or None)
        except TLSConfigurationError as e:
            raise _fail(str(e)) from None
        where = f"{options['interface'] or '*'}:{options['port']}"
        endpoints.append((f"TLS port {where}", SSL4ServerEndpoint(
            reactor, options["port"], tlsOptions, backlog=DEFAULT_BACKLOG,
            interface=options["interface"])))
    for description in options["listen"]:
        try:
            endpoints.append((description, serverFromString(reactor, description)))
        except Exception as e:
            raise _fail(f"bad --listen endpoint {description!r}: {e}") from None
    parent = getattr(options, "parent", None)
    nodaemon = bool(parent["nodaemon"]) if parent is not None else True

    if options["workers"] > 1:
        from txtlsjson.workers import WorkerPool

        if options["handler"]:
            try:
                findHandler(options["handler"])
            except HandlerError as e:
                raise _fail(str(e)) from None
        metricsEndpoint = None
        if options["metrics"]:
            _needPrometheus()
            metricsEndpoint = _metricsEndpoint(options["metrics"], reactor)
        return WorkerPool(options, password, exitOnListenFailure=nodaemon,
                          metricsEndpoint=metricsEndpoint)
    service = TLSJSONService(buildServer(options, password, tlsOptions), endpoints,
                             exitOnListenFailure=nodaemon,
                             reloadOnHangup=bool(options["credentials"]))
    if options["metrics"]:
        _serveMetrics(service, options["metrics"], reactor, nodaemon)
    return service


def _needPrometheus() -> None:
    try:
        import prometheus_client  # noqa: F401  (the metrics extra)
    except ImportError:
        raise _fail("--metrics needs prometheus-client: pip install 'txtlsjson[metrics]'") from None


def _metricsEndpoint(description: str, reactor: Any) -> Any:
    from twisted.internet.endpoints import serverFromString

    try:
        return serverFromString(reactor, description)
    except Exception as e:
        raise _fail(f"bad --metrics endpoint {description!r}: {e}") from None


def _serveMetrics(service: "TLSJSONService", description: str, reactor: Any,
                  exitOnListenFailure: bool) -> None:
    """
    Serve the server's metrics on the endpoint C{description}, as a child of
    C{service}.
    """
    from txtlsjson.service import metricsService

    endpoint = _metricsEndpoint(description, reactor)
    assert service.server.metrics is not None
    metricsService(description, endpoint, service.server.metrics,
                   exitOnListenFailure).setServiceParent(service)  # type: ignore[no-untyped-call]


def buildServer(options: Options, password: Optional[str], tlsOptions: Any = None) -> "Server":
    """
    The L{Server} the options describe, with its handler and its log: what
    C{twistd tlsjson} runs, in its own process or in each worker.

    @raise SystemExit: with a one-line message if the handler cannot be
        loaded.
    """
    from txtlsjson.errors import HandlerError
    from txtlsjson.handler import EchoHandler, attachHandler, loadHandler
    from txtlsjson.server import Server
    from txtlsjson.service import logServerEvents

    cluster = None
    if options["nats"]:
        try:
            import nats  # noqa: F401  (the cluster extra)
        except ImportError:
            raise _fail("--nats needs the NATS client: pip install 'txtlsjson[cluster]'") from None
        from txtlsjson.cluster import Cluster, natsOptions

        cluster = Cluster(options["nats"], prefix=options["nats-prefix"],
                          options=natsOptions(options["nats-credentials"], options["nats-ca"]))
    authenticator = None
    if options["credentials"]:
        from txtlsjson.credentials import CredentialsFile
        from txtlsjson.errors import CredentialsError

        try:
            authenticator = CredentialsFile(options["credentials"])
        except CredentialsError as e:
            raise _fail(str(e)) from None
    metrics = None
    if options["metrics"]:
        _needPrometheus()
        from txtlsjson.metrics import ServerMetrics

        metrics = ServerMetrics()
    server = Server(password, authenticator=authenticator, tlsOptions=tlsOptions,
                    settings=options.settings, cluster=cluster, metrics=metrics)
    if cluster is not None:
        server.log.info("node {serial} joining the cluster through NATS at {urls}",
                        serial=cluster.serial, urls=", ".join(options["nats"]))
    if options["handler"]:
        try:
            handler = loadHandler(options["handler"], server)
        except HandlerError as e:
            raise _fail(str(e)) from None
    else:
        handler = EchoHandler(server.factory.clock)
    attachHandler(server, handler)
    logServerEvents(server)
    files: Optional[DevFiles] = getattr(options, "devFiles", None)
    if files is not None:
        server.log.warn("--dev: certificate {certificate}, key {key}, password in "
                        "{passwordFile}{made}: for trying out; never use them in production",
                        certificate=files.certificate, key=files.key,
                        passwordFile=files.passwordFile,
                        made=" (made now)" if files.made else "")
    return server

"""
The Twisted-native layer: C{LineReceiver} protocols and their factories.

The protocols are glue: C{dataReceived} frames bytes into lines
(L{LineBuffer}), C{lineReceived} hands each to a L{Session} (which holds
every protocol rule), the session writes through L{OutgoingLines} (pacing
and backpressure), and requests are answered by L{txtlsjson.answers}.
Subclass them and override the hooks (L{TLSJSONProtocol.authenticated},
L{TLSJSONProtocol.messageReceived}, L{TLSJSONProtocol.requestReceived},
L{TLSJSONProtocol.errorReceived}, L{TLSJSONProtocol.connectionClosed}) to
write an application.

TLS is not done here: listen with C{reactor.listenSSL} or an C{ssl:} endpoint
and connect with C{reactor.connectSSL}, giving them the options from
L{txtlsjson.tls}.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, List, Optional, Set, cast

from cryptography import x509
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IAddress, IReactorTime, ITransport
from twisted.internet.protocol import ReconnectingClientFactory, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.answers import answerRequest
from txtlsjson.credentials import ANONYMOUS, Authenticator, Identity, SharedPassword, subjectOf
from txtlsjson.errors import (
    AuthenticationFailed,
    CredentialRevoked,
    CredentialsError,
    InvalidSetting,
    NotConnected,
    TLSJSONError,
)
from txtlsjson.linereceiver import FLUSH_TIMEOUT, SessionLineReceiver
from txtlsjson.session import _AUTHENTICATED, ClientSession, ServerSession, Session
from txtlsjson.settings import ClientSettings, ServerSettings, checkPassword
from txtlsjson.throttle import AuthenticationThrottle, PasswordPacer, addressKey
from txtlsjson.wire import JSONObject

__all__ = ["FLUSH_TIMEOUT", "TLSJSONProtocol", "TLSJSONServerProtocol", "TLSJSONClientProtocol",
           "TLSJSONServerFactory", "TLSJSONClientFactory", "peerOf"]


def _defaultReactor(reactor: Optional[IReactorTime]) -> Any:
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor


class TLSJSONProtocol(SessionLineReceiver):
    """
    One tls-json connection, either side: the application's API and hooks
    over L{SessionLineReceiver}.  Use L{TLSJSONServerProtocol} or
    L{TLSJSONClientProtocol}.
    """

    log = Logger()

    # -- the session's observer ------------------------------------------

    def sessionAuthenticated(self) -> None:
        """
        The session authenticated: lift the line limit to the configured one,
        fire the L{whenAuthenticated} observers and call L{authenticated}.
        """
        assert self.session is not None
        self.MAX_LENGTH = self.session.maxLineLength
        self._authenticatedObservers.fire(None)
        self.authenticated()

    #: The session received a request: answer it by the one path of
    #: L{txtlsjson.answers}, which calls L{requestReceived}.  Not a hook:
    #: override L{requestReceived}.  (The path's function itself, not a
    #: method calling it: one call less per request.)
    sessionRequest = answerRequest

    # -- the application's API -----------------------------------------

    @property
    def isAuthenticated(self) -> bool:
        """
        Whether the connection is up and authenticated.
        """
        session = self.session
        return session is not None and session.state is _AUTHENTICATED

    def send(self, message: JSONObject) -> None:
        """
        Send an application message (a dict).  The caller's dict is not
        modified.

        @raise NotConnected: if not authenticated (yet, or any more).
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; L{ReservedKeyError<txtlsjson.errors.ReservedKeyError>} if it
            holds a reserved key.  Nothing was sent.
        """
        session = self.session
        if session is None:
            raise NotConnected()
        session.send(message)

    def request(self, request: JSONObject) -> "Deferred[JSONObject]":
        """
        Send a request (a dict) and return a Deferred that fires with the
        response (its C{responseId} removed).

        The Deferred fails with L{NotConnected}, L{InvalidOutgoingMessage},
        L{RequestTimeout<txtlsjson.errors.RequestTimeout>} or
        L{ConnectionLost<txtlsjson.errors.ConnectionLost>}; cancelling it
        forgets the request.  This method never raises.
        """
        session = self.session
        if session is None:
            return fail(NotConnected())
        return session.request(request)

    def whenAuthenticated(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires when the connection authenticates
            (at once if it has), or fails with L{NotConnected} if it closes
            first.
        """
        if self.isAuthenticated:
            return succeed(None)
        if self._closed:
            return fail(NotConnected())
        return self._authenticatedObservers.whenFired()

    # -- hooks -------------------------------------------------------------

    def authenticated(self) -> None:
        """
        Hook: the password step succeeded; L{send} and L{request} work now.
        """

    def messageReceived(self, message: JSONObject) -> None:
        """
        Hook: an application message arrived.
        """

    def requestReceived(self, request: JSONObject) -> Any:
        """
        Hook: a request arrived (its C{requestId} removed).

        @return: the response: a dict, or a Deferred or coroutine resulting
            in one.  L{None} sends no response (the requester will time
            out).  If the hook raises or its result fails, the failure is
            logged and no response is sent; a response that cannot be sent
            goes to L{errorReceived} (see L{txtlsjson.answers}).
        """
        return None

    def errorReceived(self, error: TLSJSONError) -> None:
        """
        Hook: something went wrong on this connection -- bad input from the
        peer (the line was dropped), a refused password, a timeout, an
        answer that could not be sent.  By default it is logged.
        """
        self.log.warn("{peer}: {error}", peer=peerOf(self), error=error)


def peerOf(protocol: TLSJSONProtocol) -> "IAddress | str":
    """
    The peer's address of C{protocol}'s connection, or a placeholder when
    the transport cannot tell.
    """
    transport: Optional[ITransport] = protocol.transport
    try:
        assert transport is not None
        return transport.getPeer()
    except Exception:
        return "<unknown peer>"


class TLSJSONServerProtocol(TLSJSONProtocol):
    """
    The server side of a connection: it checks the password, drops clients
    that do not authenticate within C{authTimeout}, and pings authenticated
    clients every C{keepAliveInterval}.
    """

    factory: "TLSJSONServerFactory"

    #: Who the client is, once authenticated (see L{txtlsjson.credentials}).
    identity: Optional[Identity] = None

    def _buildSession(self) -> Session:
        factory = self.factory
        peer = peerOf(self)
        return ServerSession(self, self, factory.clock, factory.settings,
                             onKeepAliveTimeout=self.keepAliveTimedOut,
                             throttle=factory.throttle,
                             peerKey=addressKey(str(getattr(peer, "host", peer))))

    def authenticate(self, password: str) -> Any:
        """
        Ask the factory's authenticator about the client's C{password} (with
        its certificate, under mutual TLS); see L{txtlsjson.credentials}.
        """
        return self.factory.authenticator(password, self.peerCertificate())

    def peerCertificate(self) -> Optional[x509.Certificate]:
        """
        The client's certificate, with mutual TLS; else L{None}.
        """
        getPeerCertificate = getattr(self.transport, "getPeerCertificate", None)
        if getPeerCertificate is None:
            return None
        try:
            certificate = getPeerCertificate()
        except Exception:
            return None
        return None if certificate is None else certificate.to_cryptography()

    def sessionAuthenticated(self) -> None:
        """
        Take the client's L{identity} from the session, with its
        certificate's subject under mutual TLS, then go on as every protocol
        does.
        """
        identity = cast(ServerSession, self.session).identity or ANONYMOUS
        if identity.subject is None:
            subject = subjectOf(self.peerCertificate())
            if subject is not None:
                identity = replace(identity, subject=subject)
        self.identity = identity
        super().sessionAuthenticated()

    def connectionMade(self) -> None:
        """
        Join the factory's connections, then start as every protocol does.
        """
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Leave the factory's connections, then end as every protocol does.
        """
        self.factory.connections.discard(self)
        super().connectionLost(reason)

    def keepAliveTimedOut(self) -> None:
        """
        Hook: the client did not answer a ping in time; the connection is
        being dropped.
        """
        self.log.info("{peer}: no pong within {timeout} seconds; dropping",
                      peer=peerOf(self), timeout=self.factory.settings.keepAliveTimeout)


class TLSJSONClientProtocol(TLSJSONProtocol):
    """
    The client side of a connection: it sends the password, answers pings,
    and drops a server it has not heard from for C{idleTimeout} seconds.
    """

    factory: "TLSJSONClientFactory"

    def _buildSession(self) -> Session:
        factory = self.factory
        return ClientSession(self, self, cast(IReactorTime, factory.clock), factory._password,
                             factory.settings)

    def connectionMade(self) -> None:
        """
        Tell the factory, then start (the password goes out first).
        """
        self.factory.connectionMade(self)
        super().connectionMade()

    def sessionAuthenticated(self) -> None:
        """
        Tell the factory (which restarts its retry count), then the hooks.
        """
        self.factory.protocolAuthenticated(self)
        super().sessionAuthenticated()

    def dropConnection(self, reason: TLSJSONError, flush: bool) -> None:
        """
        Drop the connection; a refused password also stops reconnecting.
        """
        if isinstance(reason, AuthenticationFailed):
            # Retrying a refused password only feeds the server's
            # brute-force defences; it will not start working by itself.
            self.factory.stopTrying()
        super().dropConnection(reason, flush)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the factory it has no connection, then end as every protocol
        does.
        """
        self.factory.protocolClosed(self)
        super().connectionLost(reason)


class TLSJSONServerFactory(ServerFactory):
    """
    Builds L{TLSJSONServerProtocol}s sharing one password and one
    L{ServerSettings}.

    @ivar settings: the L{ServerSettings}.
    @ivar connections: the live protocols (authenticated or not).
    @ivar clock: the reactor used for every timer.
    @ivar throttle: what paces password checks: an L{AuthenticationThrottle},
        or, for a server in a cluster, the cluster (see L{PasswordPacer}).
    @ivar authenticator: what decides who a client is (by default a
        L{SharedPassword<txtlsjson.credentials.SharedPassword>}).
    """

    # Twisted types Factory.protocol with a factory attribute of its own
    # type, which a protocol naming its real factory does not match.
    protocol = TLSJSONServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, password: Optional[str] = None, settings: Optional[ServerSettings] = None, *,
                 authenticator: Optional[Authenticator] = None,
                 reactor: Optional[IReactorTime] = None, **overrides: Any) -> None:
        """
        @param password: the password clients must send (the shared
            password); or give C{authenticator} instead.
        @param settings: the settings; the defaults if L{None}.
        @param authenticator: decides who a client is from its password (and
            certificate), instead of one shared password: a
            L{CredentialsFile<txtlsjson.credentials.CredentialsFile>}, or
            any callable described in L{txtlsjson.credentials}.
        @param reactor: provides the timers; the global reactor by default.
        @param overrides: settings by name, replacing those of C{settings}
            (C{requestTimeout=5}; see L{ServerSettings}).
        @raise InvalidSetting: for an unknown setting or a value out of
            range, a password that is not a non-empty string, or both a
            password and an authenticator.
        """
        if authenticator is None:
            authenticator = SharedPassword(checkPassword(password))
        elif password is not None:
            raise InvalidSetting("give a password or an authenticator, not both")
        self.authenticator: Authenticator = authenticator
        self.settings = ServerSettings.fromOverrides(settings, overrides)
        self.clock = _defaultReactor(reactor)
        self.throttle: PasswordPacer = AuthenticationThrottle(
            self.clock, baseDelay=self.settings.authFailureDelay,
            maxDelay=self.settings.authFailureMaxDelay)
        self.connections: Set[TLSJSONServerProtocol] = set()

    def __repr__(self) -> str:
        # Never show the password.
        return f"<{type(self).__name__} with {len(self.connections)} connection(s)>"

    def logPrefix(self) -> str:
        """
        The name listening ports log this factory by.
        """
        return "tls-json server"

    def reloadCredentials(self) -> List[TLSJSONServerProtocol]:
        """
        Have the authenticator read its credentials again (a
        L{CredentialsFile<txtlsjson.credentials.CredentialsFile>}, or any
        authenticator with the same C{reload()} and C{isCurrent(identity)}
        methods), then close the connections of the clients whose
        credential is gone, each reported to its protocol's
        L{errorReceived<TLSJSONProtocol.errorReceived>} as
        L{CredentialRevoked}.  The other connections are left alone.

        @return: the protocols being closed.
        @raise CredentialsError: if the authenticator has nothing to reload,
            or the new credentials cannot be read (the old ones then stay in
            force, and no connection is closed).
        """
        reload = getattr(self.authenticator, "reload", None)
        isCurrent = getattr(self.authenticator, "isCurrent", None)
        if reload is None or isCurrent is None:
            raise CredentialsError("this server has no credentials to reload: it was given a password, "
                                   "not a credentials file")
        reload()
        revoked = [protocol for protocol in self.connections
                   if protocol.isAuthenticated and not isCurrent(protocol.identity)]
        for protocol in revoked:
            error = CredentialRevoked(f"the credential of {protocol.identity} was revoked")
            protocol.errorReceived(error)
            protocol.dropConnection(error, flush=True)
        return revoked

    def closeConnections(self) -> "Deferred[None]":
        """
        Close every connection; their pending requests errback with
        C{ConnectionLost}.

        @return: a Deferred that fires once all of them are closed.
        """
        closing = [p.close() for p in list(self.connections)]
        return gatherResults(closing).addCallback(lambda _: None)


class TLSJSONClientFactory(ReconnectingClientFactory):
    """
    Builds L{TLSJSONClientProtocol}s, and reconnects: at a constant
    interval, or backing off with jitter (see L{ClientSettings}).

    Use it with C{reactor.connectSSL(host, port, factory, tlsOptions)}
    (C{ReconnectingClientFactory} needs a connector; endpoints do not give
    one).  The first connection attempt is retried too.  C{stopTrying()}
    stops reconnecting and cancels an attempt under way, but does not close
    an established connection (use the protocol's C{close()}).

    @ivar settings: the L{ClientSettings}.
    @ivar reconnectInterval: seconds between a lost or failed connection and
        the next attempt; C{0}: never reconnect.
    @ivar client: the current connection's protocol, if any.
    """

    protocol = TLSJSONClientProtocol  # type: ignore[assignment]  # as the server's
    noisy = False

    def __init__(self, password: str, settings: Optional[ClientSettings] = None, *,
                 reactor: Optional[IReactorTime] = None, **overrides: Any) -> None:
        """
        @param password: the password to authenticate with.
        @param settings: the settings; the defaults if L{None}.
        @param reactor: provides the timers; the global reactor by default.
        @param overrides: settings by name, replacing those of C{settings}
            (C{reconnectInterval=5}; see L{ClientSettings}).
        @raise InvalidSetting: for an unknown setting or a value out of
            range.
        """
        self._password = checkPassword(password)
        self.settings = ClientSettings.fromOverrides(settings, overrides)
        self.reconnectInterval = self.settings.reconnectInterval
        self.initialDelay = self.delay = self.reconnectInterval
        # ReconnectingClientFactory's own backoff: a constant interval by
        # default (tls-json's), or growing by reconnectFactor up to
        # reconnectMaxDelay, varied by reconnectJitter.
        self.factor = self.settings.reconnectFactor
        self.jitter = self.settings.reconnectJitter
        # Twisted's maxDelay is an int (3600) that takes a float as well.
        maxDelay = (max(self.reconnectInterval, self.settings.reconnectMaxDelay)
                    if self.factor > 1 else self.reconnectInterval)
        self.maxDelay = maxDelay  # type: ignore[assignment]
        self.continueTrying = self.reconnectInterval > 0
        self.clock = _defaultReactor(reactor)
        self.client: Optional[TLSJSONClientProtocol] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} reconnectInterval={self.reconnectInterval}>"

    def connectionMade(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection (TCP; TLS may still be negotiating) was made.
        """
        self.client = protocol

    def protocolAuthenticated(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection authenticated: restart the retry count.  After
        L{stopTrying}, this does not resume reconnecting (C{resetDelay} on its
        own would).
        """
        if self.continueTrying:
            self.resetDelay()

    def protocolClosed(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection closed.
        """
        if self.client is protocol:
            self.client = None

"""
The one exception hierarchy of txtlsjson.

Every exception the library raises, or hands to an errback or an C{error}
event, derives from L{TLSJSONError}.  Where the Node.js peer (tls-json) has a
message string that users may match on, the same string is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Union

if TYPE_CHECKING:
    from twisted.python.failure import Failure


class TLSJSONError(Exception):
    """
    Base class of every txtlsjson error.
    """


class NotConnected(TLSJSONError):
    """
    A message or request was sent on a connection that is not (or no longer)
    connected and authenticated.
    """

    def __init__(self, message: str = "not connected or not authenticated") -> None:
        super().__init__(message)


class RequestTimeout(TLSJSONError):
    """
    No response to a request arrived within the request timeout.
    """

    def __init__(self, message: str = "request timeout") -> None:
        super().__init__(message)


class ConnectionLost(TLSJSONError):
    """
    The connection was lost while a request was waiting for its response.
    """

    def __init__(self, message: str = "connection lost") -> None:
        super().__init__(message)


class AuthenticationFailed(TLSJSONError):
    """
    The server refused the password (client side), or a client sent a wrong
    password (server side).

    @ivar serverMessage: the C{error} text the server sent, if any.
    """

    def __init__(self, serverMessage: str = "incorrect password") -> None:
        super().__init__(serverMessage)
        self.serverMessage = serverMessage


class AuthenticationTimeout(TLSJSONError):
    """
    A peer did not complete the password exchange within the allowed time.
    """


class KeepAliveTimeout(TLSJSONError):
    """
    The server pinged a client and no matching pong arrived within
    C{keepAliveTimeout} seconds.
    """


class IdleTimeout(TLSJSONError):
    """
    The client heard nothing at all (no message, no ping) from its server for
    C{idleTimeout} seconds, and dropped the connection as dead.
    """


class SlowConsumer(TLSJSONError):
    """
    The peer stopped reading: more than C{maxBufferedBytes} of messages
    waited for it on top of the transport's own buffer, so the connection
    was dropped to keep memory bounded.
    """


class ProtocolError(TLSJSONError):
    """
    The peer sent something that breaks the wire protocol.  The offending
    line is dropped; later lines are still delivered unless the subclass says
    otherwise.
    """


class InvalidMessage(ProtocolError):
    """
    A received line is not a usable message: not UTF-8, not JSON, not a JSON
    object, nested too deeply, or a reserved key with a value this protocol
    never sends.
    """


class UnknownResponse(ProtocolError):
    """
    A response arrived for a request id that is not pending (never issued,
    already answered, timed out or cancelled).
    """


class LineTooLong(ProtocolError):
    """
    The peer sent a line longer than the connection's C{maxLineLength}.  The
    connection is closed, since the stream cannot be resynchronised cheaply.

    @ivar lines: the complete lines received before the long one, which are
        still to be delivered.
    @ivar line: the long line, as much of it as had arrived (for
        C{lineLengthExceeded}); the framing no longer holds it.
    """

    def __init__(self, message: str,
                 lines: Optional[List[Union[bytes, bytearray]]] = None,
                 line: Union[bytes, bytearray] = b"") -> None:
        super().__init__(message)
        self.lines = lines or []
        self.line = line


class InvalidOutgoingMessage(TLSJSONError, ValueError):
    """
    The application tried to send something that cannot go on the wire
    unchanged: not a dict, not JSON-serialisable, containing NaN/Infinity or
    a lone surrogate, or longer than the peer's line limit.  Nothing was sent.
    """


class ReservedKeyError(InvalidOutgoingMessage):
    """
    The application tried to send an object that contains a key the protocol
    reserves (C{requestId}, C{responseId}, C{__ping}, C{__pong}); the peer
    would misread it.  Nothing was sent.
    """


class CertificateNameError(TLSJSONError):
    """
    The server's certificate does not name the host that was dialled, or
    names it only in the subject CN without a subjectAltName.
    """


class TLSConfigurationError(TLSJSONError, ValueError):
    """
    A certificate, key or CA file is missing, unreadable or not valid PEM.
    """


class ConnectionFailed(TLSJSONError):
    """
    A connection could not be made, or ended abnormally (refused, reset,
    TLS handshake failure).

    @ivar reason: the L{Failure<twisted.python.failure.Failure>} Twisted
        reported.
    """

    def __init__(self, reason: "Failure") -> None:
        message = reason.getErrorMessage()
        advice = _tlsAdvice(message)
        super().__init__(f"{advice} ({message})" if advice else message)
        self.reason = reason


#: What OpenSSL's words for a refused handshake mean, and what to do.
_TLS_ADVICE = [
    (("certificate verify failed",),
     "the server's certificate is not trusted: give the CA that issued it "
     "(ca=[...], --ca FILE), or for a self-signed server its certificate"),
    (("certificate required", "bad certificate", "unknown ca", "certificate unknown"),
     "the server refused the client certificate, or wanted one: give one its "
     "CA trusts (clientCertificate=..., --client-cert FILE)"),
    (("unsupported protocol", "wrong version number", "no protocols available",
      "protocol version"),
     "no TLS version in common: both sides need TLS 1.2 or newer"),
]


def _tlsAdvice(message: str) -> str:
    """
    What a TLS failure's message means, in words a user can act on; empty
    when it is not one of those.
    """
    lowered = message.lower()
    for words, advice in _TLS_ADVICE:
        if any(word in lowered for word in words):
            return advice
    return ""


class AlreadyAnswered(TLSJSONError):
    """
    A request was answered a second time (C{res.send} called again); the
    second answer was not sent.
    """


class InvalidSetting(TLSJSONError, ValueError):
    """
    A setting (a timeout, a size, a port) is out of its range or of the
    wrong type; the message names it and says what it takes.
    """


class PasswordError(TLSJSONError, ValueError):
    """
    No usable password: none given, the file unreadable, or empty.
    """


class TooManyAttempts(TLSJSONError):
    """
    An address already has the maximum number of password attempts waiting;
    the new one is refused at once.
    """


class ListenFailed(TLSJSONError):
    """
    A server could not listen on one of its endpoints.
    """


class HandlerError(TLSJSONError, ValueError):
    """
    A C{--handler} could not be loaded or does not fit the interface.
    """


class CommandError(TLSJSONError):
    """
    Ends the C{tlsjson} command with a one-line message and an exit code.

    @ivar code: the exit code.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ClusterUnavailable(TLSJSONError):
    """
    A message for another node could not be sent: the cluster bus (NATS)
    is not connected.  Local clients are not affected.
    """


class CredentialsError(TLSJSONError, ValueError):
    """
    A credentials file cannot be read or used: missing, unreadable, or a
    line that is not C{NAME KEYID HASH} (the message names the file and the
    line); or a name to add that is taken or not a valid name.
    """


class AuthenticatorFailed(TLSJSONError):
    """
    The server's authenticator raised or failed (a database down, say)
    while checking a client's password: the client is dropped without being
    told its password was wrong, so that a tls-json client tries again.
    """


class CredentialRevoked(TLSJSONError):
    """
    A connected client's credential was removed from the credentials file
    (or its secret replaced): its connection was closed on reload.
    """

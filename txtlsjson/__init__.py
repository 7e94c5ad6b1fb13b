"""
txtlsjson: JSON messages both ways over TLS after a password exchange, for
Twisted.  It speaks the wire protocol of the Node.js package tls-json 3.3.0.

Two layers:
  - Twisted-native: L{TLSJSONServerFactory}, L{TLSJSONClientFactory} and
    their protocols, with overridable hooks;
  - tls-json-style: L{Server} and L{Client} with C{.on(event, handler)}.
"""

from txtlsjson.client import Client
from txtlsjson.credentials import CredentialsFile, Identity, SharedPassword
from txtlsjson.errors import (
    AuthenticationFailed,
    AuthenticationTimeout,
    AuthenticatorFailed,
    CertificateNameError,
    ConnectionFailed,
    ConnectionLost,
    CredentialRevoked,
    CredentialsError,
    IdleTimeout,
    InvalidMessage,
    InvalidOutgoingMessage,
    KeepAliveTimeout,
    LineTooLong,
    NotConnected,
    ProtocolError,
    RequestTimeout,
    ReservedKeyError,
    SlowConsumer,
    TLSConfigurationError,
    TLSJSONError,
    UnknownResponse,
)
from txtlsjson.protocol import (
    TLSJSONClientFactory,
    TLSJSONClientProtocol,
    TLSJSONProtocol,
    TLSJSONServerFactory,
    TLSJSONServerProtocol,
)
from txtlsjson.server import Server
from txtlsjson.tls import clientTLSOptions, serverTLSOptions

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "AuthenticationTimeout",
    "AuthenticatorFailed",
    "CertificateNameError",
    "Client",
    "ConnectionFailed",
    "ConnectionLost",
    "CredentialRevoked",
    "CredentialsError",
    "CredentialsFile",
    "IdleTimeout",
    "Identity",
    "InvalidMessage",
    "InvalidOutgoingMessage",
    "KeepAliveTimeout",
    "LineTooLong",
    "NotConnected",
    "ProtocolError",
    "RequestTimeout",
    "ReservedKeyError",
    "Server",
    "SharedPassword",
    "SlowConsumer",
    "TLSConfigurationError",
    "TLSJSONClientFactory",
    "TLSJSONClientProtocol",
    "TLSJSONError",
    "TLSJSONProtocol",
    "TLSJSONServerFactory",
    "TLSJSONServerProtocol",
    "UnknownResponse",
    "clientTLSOptions",
    "serverTLSOptions",
]

"""
txtlsjson: JSON messages both ways over TLS after a password exchange, for
Twisted.  It speaks the wire protocol of the Node.js package tls-json 3.3.0.

Two layers:
  - Twisted-native: L{TLSJSONServerFactory}, L{TLSJSONClientFactory} and
    their protocols, with overridable hooks;
  - tls-json-style: L{Server} and L{Client} with C{.on(event, handler)}.
"""

from txtlsjson.client import Client
from txtlsjson.errors import (
    AuthenticationFailed,
    AuthenticationTimeout,
    CertificateNameError,
    ConnectionFailed,
    ConnectionLost,
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
    "CertificateNameError",
    "Client",
    "ConnectionFailed",
    "ConnectionLost",
    "IdleTimeout",
    "InvalidMessage",
    "InvalidOutgoingMessage",
    "KeepAliveTimeout",
    "LineTooLong",
    "NotConnected",
    "ProtocolError",
    "RequestTimeout",
    "ReservedKeyError",
    "Server",
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

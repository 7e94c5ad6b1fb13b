"""
Every setting of a connection, in one place: its name, default, unit, help
and check.

L{ServerSettings} and L{ClientSettings} are frozen dataclasses.  The
factories, L{Server<txtlsjson.server.Server>},
L{Client<txtlsjson.client.Client>}, C{twistd tlsjson}'s options and the
C{tlsjson} command all read them, so a default or a range is written once::

    settings = ServerSettings(requestTimeout=5)
    factory = TLSJSONServerFactory(password, settings)
    Server(password, certificate=..., privateKey=..., requestTimeout=5)  # the same

Times are in seconds (floats), sizes in bytes, as everywhere in Twisted.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Type, TypeVar

from txtlsjson.errors import InvalidSetting

#: The longest line, in bytes, either side accepts or sends by default.
DEFAULT_MAX_LINE_LENGTH = 32 * 1024 * 1024

#: The longest line accepted before authentication, whatever the setting:
#: only the password step happens then, so an unauthenticated peer cannot
#: make the server buffer more than this.
UNAUTHENTICATED_MAX_LINE_LENGTH = 64 * 1024


@dataclass(frozen=True)
class Kind:
    """
    What values a setting takes: its unit, a check, and how to read it from
    a command line.

    @ivar unit: the unit, as help texts and tables say it (C{"seconds"}).
    @ivar expected: what a valid value is, for error messages.
    """

    unit: str
    expected: str
    accepts: Callable[[Any], bool]
    parse: Callable[[str], Any]

    def check(self, name: str, value: Any) -> Any:
        """
        @return: C{value}, if valid.
        @raise InvalidSetting: naming C{name}, if not.
        """
        if not self.accepts(value):
            raise InvalidSetting(f"{name} {self.complaint(value)}")
        return value

    def complaint(self, value: Any) -> str:
        """
        What is wrong with C{value}, for a message that names the setting
        before it.
        """
        return f"must be {self.expected}, not {value!r}"

    def fromString(self, name: str, text: str) -> Any:
        """
        Read and check a value given on a command line.

        @raise InvalidSetting: naming C{name}, if C{text} is not valid.
        """
        try:
            value = self.parse(text)
        except ValueError:
            raise InvalidSetting(f"{name} {self.complaint(text)}") from None
        return self.check(name, value)


def _isNumber(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _isInteger(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


SECONDS = Kind("seconds", "a number of seconds >= 0",
               lambda v: _isNumber(v) and 0 <= v < math.inf, float)
POSITIVE_SECONDS = Kind("seconds", "a number of seconds > 0",
                        lambda v: _isNumber(v) and 0 < v < math.inf, float)
BYTES = Kind("bytes", "a number of bytes >= 0", lambda v: _isInteger(v) and v >= 0, int)
POSITIVE_BYTES = Kind("bytes", "a number of bytes >= 1", lambda v: _isInteger(v) and v >= 1, int)
#: A port to listen on: C{0} picks a free one.
LISTEN_PORT = Kind("port", "a port number from 0 to 65535 (0 picks a free one)",
                   lambda v: _isInteger(v) and 0 <= v <= 65535, int)
#: A factor by which a delay grows.
FACTOR = Kind("factor", "a number >= 1", lambda v: _isNumber(v) and 1 <= v < math.inf, float)
#: A fraction, from 0 to 1.
FRACTION = Kind("fraction", "a number from 0 to 1", lambda v: _isNumber(v) and 0 <= v <= 1,
                float)
#: How many worker processes serve a port.
WORKERS = Kind("processes", "a number of worker processes >= 1",
               lambda v: _isInteger(v) and v >= 1, int)
#: A port to connect to.
PORT = Kind("port", "a port number from 1 to 65535",
            lambda v: _isInteger(v) and 1 <= v <= 65535, int)


def _setting(default: Any, kind: Kind, help: str, option: Optional[str] = None) -> Any:
    """
    A dataclass field with what the rest of the package needs to know of it.

    @param option: its command-line name (C{twistd tlsjson --NAME}), if it
        has one.
    """
    return field(default=default, metadata={"kind": kind, "help": help, "option": option})


_Settings = TypeVar("_Settings", bound="ConnectionSettings")


@dataclass(frozen=True)
class ConnectionSettings:
    """
    The settings both sides have.  Use L{ServerSettings} or
    L{ClientSettings}.
    """

    requestTimeout: float = _setting(
        10.0, SECONDS, "seconds a request waits for its response (0: forever)",
        "request-timeout")
    maxLineLength: int = _setting(
        DEFAULT_MAX_LINE_LENGTH, POSITIVE_BYTES,
        "the longest message accepted or sent, in bytes (64 KiB before authentication)",
        "max-line-length")
    maxBufferedBytes: int = _setting(
        2 * DEFAULT_MAX_LINE_LENGTH, BYTES,
        "bytes that may wait for a peer that stopped reading, beyond the transport's "
        "buffer; past it the peer is dropped (0: no limit). Keep it a few times "
        "the longest message",
        "max-buffered-bytes")

    def __post_init__(self) -> None:
        for spec in fields(self):
            spec.metadata["kind"].check(spec.name, getattr(self, spec.name))

    @classmethod
    def fromOverrides(cls: Type[_Settings], settings: Optional[_Settings] = None,
                      overrides: Mapping[str, Any] = {}) -> _Settings:
        """
        C{settings} (the defaults, if L{None}) with C{overrides} replacing
        some of them: how the factories and facades take settings as
        keyword arguments.

        @raise InvalidSetting: for a name that is not a setting, or a value
            out of range.
        """
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidSetting(
                f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; "
                f"it has {', '.join(sorted(known))}")
        base = settings if settings is not None else cls()
        if not isinstance(base, cls):
            raise InvalidSetting(f"settings must be {cls.__name__}, not {base!r}")
        return replace(base, **overrides) if overrides else base

    @classmethod
    def specifications(cls) -> Iterator["Field[Any]"]:
        """
        @return: the dataclass fields, whose C{metadata} holds each
            setting's C{kind}, C{help} and C{option}.
        """
        return iter(fields(cls))

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """
        @return: each setting's default, by name.
        """
        return {spec.name: spec.default for spec in fields(cls) if spec.default is not MISSING}


@dataclass(frozen=True)
class ServerSettings(ConnectionSettings):
    """
    A server's settings (C{TLSJSONServerFactory}, C{Server}, C{twistd
    tlsjson}).
    """

    keepAliveInterval: float = _setting(
        10.0, SECONDS, "seconds between pings to each client (0: no pings)",
        "keepalive-interval")
    keepAliveTimeout: float = _setting(
        5.0, SECONDS, "seconds a client has to answer a ping", "keepalive-timeout")
    authTimeout: float = _setting(
        10.0, SECONDS, "seconds a new connection has to authenticate (0: forever, "
        "not advisable on a public port)", "auth-timeout")
    authFailureDelay: float = _setting(
        1.0, SECONDS, "seconds the next answer to an address (IPv6: its /64 network) "
        "waits after a wrong password from it, doubling per failure; checks from one "
        "address go one at a time (0: no wait)", "auth-failure-delay")
    authFailureMaxDelay: float = _setting(
        16.0, SECONDS, "the longest such wait", "auth-failure-max-delay")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keepAliveInterval > 0 and self.keepAliveTimeout <= 0:
            raise InvalidSetting("keepAliveTimeout must be > 0 when keepAliveInterval is set")


@dataclass(frozen=True)
class ClientSettings(ConnectionSettings):
    """
    A client's settings (C{TLSJSONClientFactory}, C{Client}).
    """

    reconnectInterval: float = _setting(
        0.0, SECONDS, "seconds between a lost or failed connection and the next "
        "attempt (0: never reconnect)", "reconnect-interval")
    reconnectFactor: float = _setting(
        1.0, FACTOR, "how much longer each further reconnection attempt waits "
        "(1: always reconnectInterval, as tls-json; 2: doubling)", "reconnect-factor")
    reconnectJitter: float = _setting(
        0.0, FRACTION, "how much each wait varies at random, as a fraction of it "
        "(0: not at all), so that a fleet does not reconnect in one instant",
        "reconnect-jitter")
    reconnectMaxDelay: float = _setting(
        30.0, SECONDS, "the longest wait between attempts once it grows (with a "
        "reconnectFactor above 1)", "reconnect-max-delay")
    idleTimeout: float = _setting(
        30.0, SECONDS, "seconds of silence from the server (no message, no ping) after "
        "which it is taken for dead; keep it above the server's keepalive interval "
        "plus timeout (0: never)")
    connectTimeout: float = _setting(
        30.0, POSITIVE_SECONDS, "seconds a TCP connection attempt may take")


def checkPassword(password: object) -> str:
    """
    @return: C{password}, if it is a non-empty string.
    @raise InvalidSetting: if not.
    """
    if not isinstance(password, str) or not password:
        raise InvalidSetting("password must be a non-empty string")
    return password

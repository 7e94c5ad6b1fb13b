"""
What the nodes of a cluster say to each other, free of I/O: ids, the
errors an answer may carry, and how operations are framed in NATS
messages.  (The tls-json wire is L{txtlsjson.wire}; this is the cluster's.)
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from twisted.python.failure import Failure

from txtlsjson.codec import encodeValue
from txtlsjson.errors import (
    ClusterUnavailable,
    ConnectionLost,
    InvalidOutgoingMessage,
    NotConnected,
    RequestTimeout,
    TLSJSONError,
    TooManyAttempts,
)
from txtlsjson.natsthread import MessageHandler
from txtlsjson.wire import JSONObject

#: Bits of a connection id that number a node's connections.
LOCAL_BITS = 24

#: The errors a node's answer may name, rebuilt on the asking node.
ERRORS: Dict[str, Callable[[str], TLSJSONError]] = {
    cls.__name__: cls for cls in (NotConnected, RequestTimeout, ConnectionLost,
                                  InvalidOutgoingMessage, ClusterUnavailable, TooManyAttempts)}


def nodeOf(connectionId: int) -> int:
    """
    The serial of the node holding C{connectionId}.
    """
    return connectionId >> LOCAL_BITS


def encode(obj: JSONObject) -> bytes:
    """
    An operation, as one line of a NATS message.
    """
    return encodeValue(obj)


def eachLine(handler: MessageHandler) -> MessageHandler:
    """
    C{handler}, called for each message of one NATS message: whole lines,
    joined when several went to one subject at once (see
    L{NATSConnection.publish}).
    """
    def each(subject: str, data: bytes, reply: str) -> None:
        for line in data.split(b"\n"):
            if line:
                handler(subject, line, reply)

    return each


def answerValue(answer: JSONObject) -> Any:
    """
    An answer's value, or its error raised again here.
    """
    if "error" in answer:
        raise ERRORS.get(answer["error"], TLSJSONError)(answer.get("message", ""))
    return answer.get("ok")


def errorAnswer(failure: Failure) -> JSONObject:
    """
    The answer that carries C{failure} to the asking node.
    """
    error = failure.value
    name = type(error).__name__
    if name not in ERRORS:
        for known, cls in ERRORS.items():
            if isinstance(error, cls):  # type: ignore[arg-type]
                name = known
                break
    return {"error": name, "message": str(error)}

"""
Twisted's TLS transport with its common path made cheap.

Twisted's L{TLSMemoryBIOProtocol} reaches OpenSSL through pyOpenSSL's
public methods, which report "nothing more to read" by raising
C{WantReadError} and allocate a new buffer for every call.  On a connection
that exchanges small messages, that is most of what TLS costs: every
received record ends in a raised and caught exception (one from C{recv},
one from C{bio_read}), and every write in another.

L{fastTLS} changes the class of a connection's TLS transport to a subclass
that makes the same OpenSSL calls (C{BIO_write}, C{SSL_read}, C{SSL_write},
C{BIO_read}) through pyOpenSSL's own cffi binding, reading their return
codes instead of catching exceptions, into one reused buffer.  Only the
common case is done here -- the handshake finished, nothing buffered,
OpenSSL asking for more bytes; everything else (the handshake, a
renegotiation, a close, an error) goes to Twisted's and pyOpenSSL's own
code, which raise and handle exactly as before.

Two things it does otherwise than Twisted, both for a peer that sends
many small messages: what the protocol writes while the records of one
read are delivered (a record at a time, as Twisted does) is encrypted at
once but sent together when they all are, not one write a record; and a
write longer than a record has its records sent together, up to 64 KiB
at once.  Fewer, fuller writes cost both ends less
(C{benchmarks/RESULTS.rst}).

The common path also keeps clear of attribute reads through
C{__getattr__}: Twisted's TLS transport and pyOpenSSL's C{Connection} both
have one, which makes CPython look up every attribute of their instances
the slow way, unspecialized (some thirty lookups per message each way,
before).  It reads the transport's state from its instance dictionary,
and keeps the C{Connection}'s pointers there.

It rests on pyOpenSSL's private names (C{_lib}, C{_ffi}, and a
C{Connection}'s C{_ssl}, C{_into_ssl} and C{_from_ssl}); where they are
missing, L{fastTLS} leaves the transport as it is.  This belongs in
Twisted's C{twisted.protocols.tls} (or in pyOpenSSL, as calls that return
instead of raising); it lives here, for txtlsjson's own connections, until
it is there.  What it saves is measured in C{benchmarks/RESULTS.rst}.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

from OpenSSL import SSL
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

__all__ = ["encrypt", "fastState", "fastTLS"]

#: The most bytes read from OpenSSL at once, as Twisted reads them.
_READ_SIZE = 2**15

#: The largest write handed to OpenSSL at once: one TLS record's payload,
#: as Twisted splits them.
_RECORD_SIZE = 2**14

#: Plaintext encrypted before what it became is written out: a write of
#: this much is one write to the transport beneath, not one a record, and
#: OpenSSL's buffer of ciphertext stays this small whatever is written.
_SEND_AT_ONCE = 4 * _RECORD_SIZE

_lib: Any = getattr(SSL, "_lib", None)
_ffi: Any = getattr(SSL, "_ffi", None)
_AVAILABLE = _lib is not None and _ffi is not None and all(
    hasattr(_lib, name) for name in (
        "SSL_read", "SSL_write", "SSL_get_error", "SSL_ERROR_WANT_READ", "SSL_pending",
        "BIO_read", "BIO_write", "BIO_should_retry", "BIO_get_mem_data"))

if _AVAILABLE:
    # One buffer for every connection: whatever is read into it is copied
    # out before anything else can run (the reactor's thread only, as all
    # of a protocol's code).
    _buffer = _ffi.new("char[]", _READ_SIZE)
    # Copies the first n bytes out as bytes: half the cost of
    # ffi.buffer(_buffer, n)[:], which makes a buffer object to slice.
    _copyOut = _ffi.unpack
    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_get_error = _lib.SSL_get_error
    _WANT_READ = _lib.SSL_ERROR_WANT_READ
    _BIO_read = _lib.BIO_read
    _BIO_write = _lib.BIO_write
    _BIO_should_retry = _lib.BIO_should_retry
    _SSL_pending = _lib.SSL_pending
    # How many bytes wait in a memory BIO.  Asked with a null pointer for
    # where they are: given one, OpenSSL first moves the waiting bytes to
    # the front of its buffer.
    _BIO_get_mem_data = _lib.BIO_get_mem_data
    _NULL = _ffi.NULL


#: Reads an attribute without the class's C{__getattr__}: the
#: C{Connection}'s current C{Context} (a server may switch it during the
#: handshake), read where it is needed rather than kept, so that the
#: C{Connection}'s attributes stay where CPython keeps them compactly.
_attribute = object.__getattribute__


def _problemWaiting(connection: SSL.Connection) -> bool:
    """
    Whether one of pyOpenSSL's callbacks on C{connection}'s current
    C{Context} (certificate verification, ALPN, OCSP) failed and waits to
    be raised by the next call, as pyOpenSSL raises it.
    """
    context = _attribute(connection, "_context")
    helpers: Tuple[Any, ...]
    try:
        helpers = (context._verify_helper, context._alpn_select_helper, context._ocsp_helper)
    except AttributeError:  # another pyOpenSSL: look for what it has
        helpers = tuple(getattr(context, name, None)
                        for name in ("_verify_helper", "_alpn_select_helper", "_ocsp_helper"))
    for helper in helpers:
        if helper is not None and getattr(helper, "_problems", None):
            return True
    return False


#: Twisted's class defaults among what the common path reads: copied into
#: a transport's instance dictionary when it is made fast (see L{fastTLS}),
#: so that the dictionary holds every one of them.
_DEFAULTS = ("_handshakeDone", "_lostTLSConnection", "_aborted", "disconnecting")

#: What the common path uses of the transport's pyOpenSSL C{Connection}
#: (which has a C{__getattr__} as well), kept in the transport's dictionary
#: under these names while the connection lasts: its C{SSL} and C{BIO}
#: pointers, which never change.
_SSL, _INTO_SSL, _FROM_SSL = "_fastSSL", "_fastIntoSSL", "_fastFromSSL"

#: Whether what is encrypted is held in OpenSSL's buffer, to be sent with
#: the answers to the records of the read being delivered that are still
#: to come (L{_deliverDecrypted}); and how many bytes of plaintext it holds.
_HOLDING, _HELD = "_fastHolding", "_fastHeld"


def _deliverDecrypted(tls: Any, state: Dict[str, Any]) -> None:
    """
    Deliver every decrypted byte OpenSSL has, a record at a time as
    Twisted does; then send what reading made OpenSSL write (a handshake
    message, an alert).

    While more records wait to be read, what the protocol writes is
    encrypted at once, as Twisted does it, but held in OpenSSL's buffer
    (see L{encrypt}), and goes out with what it writes for the last: a
    peer that writes many small messages sends many records, which a read
    of 64 KiB may hold dozens of, and their answers then cost one write,
    not one a record.

    @param tls: the TLS transport.
    @param state: its instance dictionary.
    """
    ssl, intoSSL = state[_SSL], state[_INTO_SSL]
    try:
        while not state["_lostTLSConnection"]:
            read = _SSL_read(ssl, _buffer, _READ_SIZE)
            if read > 0:
                # After a full record more usually follows.  After a shorter
                # one, more follows if ciphertext is left to decrypt
                # (pyOpenSSL gives OpenSSL no way to read ahead of a record,
                # so none waits elsewhere).
                more = read >= _RECORD_SIZE or _SSL_pending(ssl) or _BIO_get_mem_data(intoSSL, _NULL)
                state[_HOLDING] = more
                data = _copyOut(_buffer, read)
                if not state["_aborted"]:
                    # What ProtocolWrapper.dataReceived does, without its call.
                    state["wrappedProtocol"].dataReceived(data)
                if more:
                    continue
                # Nothing more: unless a problem waits to be raised, the
                # read that would fail to say so, and its error code, are
                # not made.
                if state["_lostTLSConnection"] or not _problemWaiting(state["_tlsConnection"]):
                    break
                continue
            if _SSL_get_error(ssl, read) == _WANT_READ and not _problemWaiting(
                    state["_tlsConnection"]):
                break
            # Twisted's handling of a close or an error sends what OpenSSL
            # holds (_flushSendBIO) before it closes: what was answered
            # before it goes first, as it would have without holding.
            try:
                state["_tlsConnection"]._raise_ssl_error(ssl, read)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                # The peer closed TLS: as Twisted's own _flushReceiveBIO.
                tls._shutdownTLS()
                tls._tlsShutdownFinished(None)
            except SSL.Error:
                tls._tlsShutdownFinished(Failure())
            else:  # an error that raises nothing: leave it to Twisted's code
                TLSMemoryBIOProtocol._flushReceiveBIO(tls)
                return
    finally:
        state[_HOLDING] = False
        if _BIO_get_mem_data(state[_FROM_SSL], _NULL):
            # What was held, if the last record had no answer (or an
            # exception ends the delivery); or a handshake message, an
            # alert.
            _sendEncrypted(tls, state)


def _sendEncrypted(tls: Any, state: Dict[str, Any]) -> None:
    """
    Write everything OpenSSL has encrypted to the transport beneath, in one
    write.
    """
    state[_HELD] = 0
    bio = state[_FROM_SSL]
    read = _BIO_read(bio, _buffer, _READ_SIZE)
    if read <= 0:
        if not _BIO_should_retry(bio):
            TLSMemoryBIOProtocol._flushSendBIO(tls)
        return
    data = _copyOut(_buffer, read)
    if read == _READ_SIZE:
        pieces = [data]
        while read == _READ_SIZE:
            read = _BIO_read(bio, _buffer, _READ_SIZE)
            if read > 0:
                pieces.append(_copyOut(_buffer, read))
        data = b"".join(pieces)
    state["transport"].write(data)


def encrypt(tls: Any, state: Dict[str, Any], data: bytes) -> None:
    """
    What C{TLSMemoryBIOProtocol._write} does, cheaply: encrypt C{data} and
    write it out -- a record at a time, as Twisted does, but up to
    L{_SEND_AT_ONCE} bytes of records in one write, not one write a record
    (a batch of answers is often more than one record).  While more
    records of a read wait to be delivered (L{_deliverDecrypted}), what is
    encrypted waits in OpenSSL's buffer, to go out with their answers, or
    until it makes L{_SEND_AT_ONCE}.

    @param tls: a TLS transport on the cheap path (L{fastState}).
    @param state: its instance dictionary, as L{fastState} returned it.
    """
    if state["_lostTLSConnection"] or type(data) is not bytes or not data:
        TLSMemoryBIOProtocol._write(tls, data)
        return
    ssl = state[_SSL]
    size = len(data)
    start = 0
    if size <= _RECORD_SIZE:  # the common case, one record
        written = _SSL_write(ssl, data, size)
        if written == size:
            if state[_HOLDING]:
                # More records of a read wait: sent with their answers.
                held = state[_HELD] + size
                if held < _SEND_AT_ONCE:
                    state[_HELD] = held
                    return
            _sendEncrypted(tls, state)
            return
        if written <= 0:
            _encryptFailed(tls, state, written, data, state[_HELD])
            return
        start = written  # a partial write: the rest below
    # Bytes encrypted and not yet sent: these, and any held before.
    held = state[_HELD] + start
    while start < size:
        # SSL_write makes one record a call.
        piece = data[start:start + _RECORD_SIZE]
        written = _SSL_write(ssl, piece, len(piece))
        if written <= 0:
            _encryptFailed(tls, state, written, data[start:], held)
            return
        start += written
        held += written
        if held >= _SEND_AT_ONCE:
            _sendEncrypted(tls, state)
            held = 0
    if state[_HOLDING]:
        state[_HELD] = held
    elif held:
        _sendEncrypted(tls, state)


def _encryptFailed(tls: Any, state: Dict[str, Any], result: int, rest: bytes,
                   held: int) -> None:
    """
    C{SSL_write} returned C{result} (not above 0) for C{rest}: send what
    was encrypted before it (C{held} bytes), then raise and handle its
    error as Twisted's C{_write} does.
    """
    if held:
        _sendEncrypted(tls, state)
    try:
        state["_tlsConnection"]._raise_ssl_error(state[_SSL], result)
    except SSL.WantReadError:
        # OpenSSL must read first (a renegotiation): wait for it, as
        # Twisted does.
        tls._bufferedWrite(rest)
    except SSL.Error:
        tls._tlsShutdownFinished(Failure())
    else:
        TLSMemoryBIOProtocol._write(tls, rest)


class _FastTLSMixin:
    """
    The read and write paths of L{TLSMemoryBIOProtocol} without exceptions
    on the common path; everything uncommon is handed to its own code.

    The transport's own attributes are read from its instance dictionary,
    not as attributes: Twisted's TLS transport inherits
    C{ProtocolWrapper.__getattr__}, and on CPython a class with
    C{__getattr__} has every attribute read on its instances take a slow
    lookup the interpreter cannot specialize (measured in
    C{benchmarks/RESULTS.rst}).  So the common path reads the dictionary
    once per call and works from it (L{_DEFAULTS} makes sure it holds what
    is read).
    """

    # Twisted's names, for the type checker: this is mixed into its class.
    _tlsConnection: SSL.Connection
    __dict__: Dict[str, Any]

    def dataReceived(self, data: bytes) -> None:
        """
        Hand received ciphertext to OpenSSL, then deliver what it decrypts.
        """
        state = self.__dict__
        if not state["_handshakeDone"] or state["_appSendBuffer"] or type(data) is not bytes or not data:
            TLSMemoryBIOProtocol.dataReceived(self, data)  # type: ignore[arg-type]
            return
        if _BIO_write(state[_INTO_SSL], data, len(data)) <= 0:
            state["_tlsConnection"].bio_write(data)  # raises, as pyOpenSSL does
            return
        _deliverDecrypted(self, state)

    def _flushReceiveBIO(self) -> None:
        """
        Deliver every decrypted byte OpenSSL has (L{_deliverDecrypted}).
        """
        _deliverDecrypted(self, self.__dict__)

    def _flushSendBIO(self) -> None:
        """
        Write everything OpenSSL has encrypted (L{_sendEncrypted}).
        """
        _sendEncrypted(self, self.__dict__)

    def _write(self, data: bytes) -> None:
        """
        Encrypt C{data} and write it out (L{encrypt}).
        """
        encrypt(self, self.__dict__, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Let go of the C{Connection}'s parts, as Twisted lets go of the
        C{Connection}.
        """
        super().connectionLost(reason)  # type: ignore[misc]
        state = self.__dict__
        for name in (_SSL, _INTO_SSL, _FROM_SSL):
            state.pop(name, None)


class _FastTLSMemoryBIOProtocol(_FastTLSMixin, TLSMemoryBIOProtocol):
    """
    L{TLSMemoryBIOProtocol}, made cheap by L{_FastTLSMixin}.
    """


class _FastBufferingTLSTransport(_FastTLSMixin, BufferingTLSTransport):
    """
    L{BufferingTLSTransport} (what C{listenSSL}, C{connectSSL} and the
    C{ssl:} endpoints make), made cheap by L{_FastTLSMixin}.
    """


_FAST: Dict[type, Type[TLSMemoryBIOProtocol]] = {
    TLSMemoryBIOProtocol: _FastTLSMemoryBIOProtocol,
    BufferingTLSTransport: _FastBufferingTLSTransport,
}


def fastTLS(transport: Optional[object]) -> bool:
    """
    Make C{transport}, if it is one of Twisted's TLS transports (exactly:
    not a subclass, whose overrides would be bypassed), take the cheap path
    for what it reads and writes from now on.

    @return: whether it does.
    """
    fast = _FAST.get(type(transport))
    if fast is None or not _AVAILABLE:
        return False
    connection: Any = getattr(transport, "_tlsConnection", None)
    if not all(hasattr(connection, name)
               for name in ("_ssl", "_into_ssl", "_from_ssl", "_context", "_raise_ssl_error")):
        return False
    transport.__class__ = fast
    state = vars(transport)
    for name in _DEFAULTS:
        if name not in state:
            state[name] = getattr(transport, name)
    state[_SSL], state[_INTO_SSL] = connection._ssl, connection._into_ssl
    state[_FROM_SSL] = connection._from_ssl
    state[_HOLDING], state[_HELD] = False, 0
    return True


def fastState(transport: object) -> Optional[Dict[str, Any]]:
    """
    The instance dictionary of C{transport} if it is on the cheap path
    (L{fastTLS}), for L{encrypt}; else L{None}.
    """
    if type(transport) in _FAST.values():
        return vars(transport)
    return None

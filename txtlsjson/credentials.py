"""
Who a client is: authenticators, and the per-client credentials file.

An authenticator is any callable C{authenticator(password, certificate)}:
C{password} is the C{password} string the client sent (tls-json's wire has
nothing else), C{certificate} the client's certificate with mutual TLS (a
C{cryptography.x509.Certificate}, else L{None}).  It returns the client's
L{Identity} -- or just its name as a string -- to accept it, or L{None} to
refuse it, and may return a Deferred or a coroutine instead (a database
lookup).  The server paces failed attempts per address whatever the
authenticator; if the authenticator raises or fails, the client is dropped
without being told its password is wrong (it is logged, and a tls-json
client tries again later).

Two come with txtlsjson:

  - L{SharedPassword}, the default: one password for every client,
    compared in constant time;
  - L{CredentialsFile}: one secret per client, each stored as a salted
    scrypt hash in a file that C{tlsjson credentials add NAME FILE} and
    C{remove} edit, and that a server reloads on demand (C{SIGHUP} under
    twistd), closing the connections of revoked clients.

A secret made by L{newSecret} reads C{KEYID.TOKEN}: the key id (12 hex
digits) finds the client's line, the token (256 random bits) is what the
hash protects.  Finding the line by key id tells a guesser only whether a
key id exists, which is no help without the token; the token itself is only
ever compared as a hash, in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from txtlsjson.errors import CredentialsError

#: scrypt's parameters for new hashes: 16 MiB and about 50 ms of one core a
#: hash here.  Each line records its own, so these may grow without
#: invalidating the file.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1

_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}\Z")
_KEY_ID = re.compile(r"[0-9a-f]{12}\Z")

#: The first line of a new credentials file.
HEADER = ("# txtlsjson credentials: NAME KEYID scrypt$N$r$p$SALT$HASH, one client a line.\n"
          "# Edit with 'tlsjson credentials add NAME FILE' and 'tlsjson credentials remove NAME FILE'.\n")


@dataclass(frozen=True)
class Identity:
    """
    Who an authenticated client is.

    @ivar name: its name: the credential's name with a credentials file,
        what a custom authenticator said, L{None} with the shared password.
    @ivar subject: its certificate's subject (an RFC 4514 string such as
        C{CN=worker-1,O=Example}) with mutual TLS, else L{None}.
    @ivar keyId: the key id of its credential in a credentials file, else
        L{None}; a reload closes the connection if it is no longer there.
    """

    name: Optional[str] = None
    subject: Optional[str] = None
    keyId: Optional[str] = None

    def __str__(self) -> str:
        """
        The name, else the certificate's subject, else C{"(shared password)"}.
        """
        return self.name or self.subject or "(shared password)"


#: The identity of a client known by nothing but the shared password: one
#: for all (an idle connection's memory counts).
ANONYMOUS = Identity()

#: What an authenticator returns, or what its Deferred or coroutine results in.
Verdict = Union[Identity, str, None]
Authenticator = Callable[[str, Optional[x509.Certificate]], Any]


def subjectOf(certificate: Optional[x509.Certificate]) -> Optional[str]:
    """
    C{certificate}'s subject as an RFC 4514 string, or L{None}.
    """
    return None if certificate is None else certificate.subject.rfc4514_string()


class SharedPassword:
    """
    The default authenticator: one password for every client, compared in
    constant time.  Its identity has no name (with mutual TLS, the server
    adds the certificate's subject).
    """

    def __init__(self, password: str) -> None:
        """
        @param password: the password clients must send.
        """
        self._password = password.encode("utf-8")

    def __repr__(self) -> str:
        # Never show the password.
        return "<SharedPassword>"

    def __call__(self, password: str, certificate: Optional[x509.Certificate]) -> Optional[Identity]:
        """
        Accept C{password} if it is the shared one.
        """
        # compare_digest takes time independent of where the bytes differ;
        # it needs equal types, hence the encoding.
        if hmac.compare_digest(password.encode("utf-8", "surrogatepass"), self._password):
            return ANONYMOUS
        return None


# -- secrets and their hashes --------------------------------------------------

def newSecret() -> Tuple[str, str]:
    """
    A fresh secret for a client.

    @return: its key id and the whole secret (C{KEYID.TOKEN}).
    """
    keyId = secrets.token_hex(6)
    return keyId, f"{keyId}.{secrets.token_urlsafe(32)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          dklen=length, maxmem=n * r * 128 + 1024 * 1024)


def hashSecret(secret: str) -> str:
    """
    The stored form of C{secret}: C{scrypt$N$r$p$SALT$HASH}, with a fresh
    16-byte salt and a 32-byte hash, both in base64.
    """
    salt = os.urandom(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@dataclass(frozen=True)
class Credential:
    """
    One line of a credentials file.

    @ivar name: the client's name.
    @ivar keyId: its secret's key id.
    @ivar hashed: the secret's stored hash (see L{hashSecret}).
    """

    name: str
    keyId: str
    hashed: str

    def matches(self, secret: str) -> bool:
        """
        Whether C{secret} is this credential's: slow (scrypt), and constant
        time in the comparison.
        """
        _, n, r, p, salt, digest = self.hashed.split("$")
        expected = base64.b64decode(digest)
        actual = _scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
        return hmac.compare_digest(actual, expected)


def _checkHash(hashed: str) -> Optional[str]:
    """
    What is wrong with a stored hash, or L{None}.
    """
    parts = hashed.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "the hash is not scrypt$N$r$p$SALT$HASH"
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        return "the hash's parameters are not numbers and base64"
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or n * r * p > 2 ** 26:
        return "the hash's scrypt parameters are out of range"
    if len(salt) < 8 or len(digest) < 16:
        return "the hash's salt or digest is too short"
    return None


def parseCredentials(text: str, source: str) -> Dict[str, Credential]:
    """
    The credentials of a file's text, by key id.

    @param source: the file's name, for the error messages.
    @raise CredentialsError: naming the first bad line and what is wrong.
    """
    byKeyId: Dict[str, Credential] = {}
    names = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source}, line {number}"
        if len(fields) != 3:
            raise CredentialsError(f"{where}: expected NAME KEYID HASH, found {len(fields)} field(s)")
        name, keyId, hashed = fields
        if not _NAME.match(name):
            raise CredentialsError(f"{where}: {name!r} is not a valid name")
        if not _KEY_ID.match(keyId):
            raise CredentialsError(f"{where}: {keyId!r} is not a key id (12 hex digits)")
        problem = _checkHash(hashed)
        if problem is not None:
            raise CredentialsError(f"{where}: {problem}")
        if name in names:
            raise CredentialsError(f"{where}: the name {name!r} appears twice")
        if keyId in byKeyId:
            raise CredentialsError(f"{where}: the key id {keyId} appears twice")
        names.add(name)
        byKeyId[keyId] = Credential(name, keyId, hashed)
    return byKeyId


def readCredentials(path: Union[str, Path]) -> Dict[str, Credential]:
    """
    The credentials in the file at C{path}, by key id.

    @raise CredentialsError: if it cannot be read, or has a bad line.
    """
    return parseCredentials(_readText(path), str(path))


def _readText(path: Union[str, Path]) -> str:
    """
    The text of the credentials file at C{path}.

    @raise CredentialsError: if it cannot be read.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(
            f"no credentials file {str(path)!r}: make one with 'tlsjson credentials add NAME "
            f"{path}'") from None
    except OSError as e:
        raise CredentialsError(f"cannot read credentials file {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {str(path)!r} is not UTF-8 text") from None


def _write(path: Path, lines: List[str]) -> None:
    """
    Replace the file at C{path} with C{lines}, atomically, readable by its
    owner only.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
            output.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def addCredential(path: Union[str, Path], name: str) -> str:
    """
    Add a client called C{name} to the credentials file at C{path} (made if
    missing) with a fresh secret, of which only the hash is written.

    @return: the secret, to give to the client (it cannot be recovered).
    @raise CredentialsError: if the name is invalid or taken, or the file
        is bad; the file is then unchanged.
    """
    path = Path(path)
    if not _NAME.match(name):
        raise CredentialsError(
            f"{name!r} is not a valid name: 1 to 128 of letters, digits and _.@+-")
    text = _readText(path) if path.exists() else HEADER
    existing = parseCredentials(text, str(path))
    if any(credential.name == name for credential in existing.values()):
        raise CredentialsError(f"{name!r} is already in {str(path)!r}: remove it first to replace its secret")
    keyId, secret = newSecret()
    while keyId in existing:
        keyId, secret = newSecret()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.append(f"{name} {keyId} {hashSecret(secret)}\n")
    _write(path, lines)
    return secret


def removeCredential(path: Union[str, Path], name: str) -> None:
    """
    Remove the client called C{name} from the credentials file at C{path}.

    @raise CredentialsError: if it is not there, or the file is bad; the
        file is then unchanged.
    """
    path = Path(path)
    text = _readText(path)
    existing = parseCredentials(text, str(path))
    if not any(credential.name == name for credential in existing.values()):
        raise CredentialsError(f"{name!r} is not in {str(path)!r}")
    kept = [line for line in text.splitlines(keepends=True) if line.split()[:1] != [name]]
    _write(path, kept)


# -- the authenticator -----------------------------------------------------------

class CredentialsFile:
    """
    The authenticator of per-client secrets kept in a file (see the module's
    description): a client sends its secret as its password, and is known
    by its credential's name.

    Checking a secret the first time costs a scrypt hash (about 50 ms),
    done in the reactor's thread pool so that other clients are served
    meanwhile; a secret that was accepted once is then checked against a
    keyed SHA-256 of it, kept in memory, so that reconnecting costs as
    little as the shared password.

    @ivar path: the file.
    """

    def __init__(self, path: Union[str, Path], *, reactor: Any = None, inThread: bool = True) -> None:
        """
        Read the file.

        @param reactor: its thread pool hashes; the global reactor by default.
        @param inThread: hash in the thread pool; C{False} hashes in the
            caller's thread (for tests on a fake reactor).
        @raise CredentialsError: if the file cannot be read or has a bad line.
        """
        self.path = Path(path)
        self._reactor = reactor
        self._inThread = inThread
        self._credentials = readCredentials(self.path)
        self._cacheKey = secrets.token_bytes(32)
        self._verified: Dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<CredentialsFile {str(self.path)!r} with {len(self._credentials)} client(s)>"

    @property
    def names(self) -> List[str]:
        """
        The names of the clients in the file, as last read.
        """
        return sorted(credential.name for credential in self._credentials.values())

    def reload(self) -> None:
        """
        Read the file again.  If it cannot be read or has a bad line, the
        credentials already loaded stay in force.

        @raise CredentialsError: saying why it was not reloaded.
        """
        credentials = readCredentials(self.path)
        self._verified = {keyId: digest for keyId, digest in self._verified.items()
                          if credentials.get(keyId) == self._credentials.get(keyId)}
        self._credentials = credentials

    def isCurrent(self, identity: Optional[Identity]) -> bool:
        """
        Whether C{identity}'s credential is still in the file (as last read).
        """
        if identity is None or identity.keyId is None:
            return False
        credential = self._credentials.get(identity.keyId)
        return credential is not None and credential.name == identity.name

    def _digest(self, secret: str) -> bytes:
        return hmac.digest(self._cacheKey, secret.encode("utf-8", "surrogatepass"), "sha256")

    def verify(self, secret: str) -> Optional[Identity]:
        """
        Check C{secret} now, in this thread.

        @return: the client's identity, or L{None} if the secret is no
            client's.
        """
        keyId = secret.partition(".")[0]
        credential = self._credentials.get(keyId)
        if credential is None or not credential.matches(secret):
            return None
        return Identity(name=credential.name, keyId=keyId)

    def __call__(self, password: str, certificate: Optional[x509.Certificate]
                 ) -> "Union[Optional[Identity], Deferred[Optional[Identity]]]":
        """
        Check C{password} as a secret: at once if it was accepted before,
        else in the thread pool.
        """
        keyId = password.partition(".")[0]
        credential = self._credentials.get(keyId)
        if credential is None:
            return None
        known = self._verified.get(keyId)
        if known is not None:
            if hmac.compare_digest(self._digest(password), known):
                return Identity(name=credential.name, keyId=keyId)
            return None
        if not self._inThread:
            return self._remember(self.verify(password), password, credential)
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        checking: Deferred[Optional[Identity]] = deferToThreadPool(
            reactor, reactor.getThreadPool(), self.verify, password)
        return checking.addCallback(self._remember, password, credential)

    def _remember(self, identity: Optional[Identity], secret: str,
                  credential: Credential) -> Optional[Identity]:
        if identity is None or self._credentials.get(credential.keyId) != credential:
            # Refused, or revoked by a reload while the thread hashed.
            return None
        self._verified[credential.keyId] = self._digest(secret)
        return identity

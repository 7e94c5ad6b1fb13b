"""
The development certificate and password of C{--dev}, wherever the
package is installed.

In a checkout (a C{certs/} directory with C{dev-password} in the current
directory) C{--dev} uses the checkout's files, as the README's quick start
does.  Anywhere else it uses a throwaway self-signed certificate for
localhost and a random password, made on first use in a per-user directory
(C{$XDG_DATA_HOME/txtlsjson/dev}, by default C{~/.local/share/txtlsjson/dev})
that only the user can read.  C{twistd tlsjson --dev} and C{tlsjson ...
--dev} find the same files.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

#: The checkout's development files, relative to the current directory.
CHECKOUT = Path("certs")


@dataclass(frozen=True)
class DevFiles:
    """
    Where the development certificate, its key and the password are.

    @ivar made: whether they were made just now (first use).
    """

    certificate: Path
    key: Path
    passwordFile: Path
    made: bool = False


def userDirectory(environ: Optional[Mapping[str, str]] = None) -> Path:
    """
    The per-user directory of the throwaway files.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser()
                                          / ".local" / "share")
    return Path(base) / "txtlsjson" / "dev"


def devFiles(environ: Optional[Mapping[str, str]] = None) -> DevFiles:
    """
    The development files: the checkout's if the current directory is one,
    else the per-user ones, made if missing.

    @raise OSError: if the per-user files cannot be made.
    """
    if (CHECKOUT / "dev-password").is_file() and (CHECKOUT / "localhost.crt").is_file():
        return DevFiles(CHECKOUT / "localhost.crt", CHECKOUT / "localhost.key",
                        CHECKOUT / "dev-password")
    directory = userDirectory(environ)
    files = DevFiles(directory / "localhost.crt", directory / "localhost.key",
                     directory / "dev-password")
    if files.certificate.is_file() and files.key.is_file() and files.passwordFile.is_file():
        return files
    from txtlsjson.certs import makeCertificate, writeKeyPair

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, certificate = makeCertificate("localhost", ["localhost", "127.0.0.1", "::1"],
                                       keyType="ecdsa")
    writeKeyPair(directory, "localhost", key, certificate, force=True)
    descriptor = os.open(files.passwordFile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as passwordFile:
        passwordFile.write(secrets.token_urlsafe(24) + "\n")
    return DevFiles(files.certificate, files.key, files.passwordFile, made=True)

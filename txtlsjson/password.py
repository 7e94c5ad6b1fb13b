"""
Reading the shared password for the command-line tools.

The password never comes from the command line (it would show in C{ps} and
shell history): only from a file or an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

from txtlsjson.errors import PasswordError

#: The environment variable the command-line tools read the password from
#: when no password file is given.
PASSWORD_ENVIRONMENT_VARIABLE = "TLSJSON_PASSWORD"


def loadPassword(
    passwordFile: Optional[Union[str, Path]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> str:
    """
    Read the password from C{passwordFile}, else from the environment
    variable L{PASSWORD_ENVIRONMENT_VARIABLE}.

    One trailing newline (as editors add) is removed from a file's content;
    anything else is part of the password.

    @raise PasswordError: with a message saying how to give one.
    """
    if passwordFile is not None:
        try:
            text = Path(passwordFile).read_text(encoding="utf-8")
        except OSError as e:
            raise PasswordError(f"cannot read password file {str(passwordFile)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise PasswordError(f"password file {str(passwordFile)!r} is not UTF-8 text") from None
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        if not text:
            raise PasswordError(f"password file {str(passwordFile)!r} is empty")
        return text
    value = (os.environ if environ is None else environ).get(PASSWORD_ENVIRONMENT_VARIABLE)
    if value:
        return value
    raise PasswordError(
        f"no password: give --password-file FILE or set {PASSWORD_ENVIRONMENT_VARIABLE} "
        "(never on the command line)")

"""
The settings (L{txtlsjson.settings}): one definition of each default, range
and unit, which the factories, the facades, C{twistd tlsjson} and the
README all show.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

import pytest
from twisted.internet.task import Clock

from txtlsjson import Client, Server, TLSJSONClientFactory, TLSJSONServerFactory
from txtlsjson.errors import InvalidSetting
from txtlsjson.settings import BYTES, ClientSettings, ServerSettings
from txtlsjson.tap import Options

from .processes import REPOSITORY


def test_defaults() -> None:
    """
    The defaults are tls-json's, in seconds, and the factories and facades
    take them unless told otherwise.
    """
    assert ServerSettings() == ServerSettings(
        requestTimeout=10.0, keepAliveInterval=10.0, keepAliveTimeout=5.0, authTimeout=10.0,
        maxLineLength=32 * 1024 * 1024, maxBufferedBytes=64 * 1024 * 1024,
        authFailureDelay=1.0, authFailureMaxDelay=16.0)
    assert ClientSettings().reconnectInterval == 0
    assert TLSJSONServerFactory("pw", reactor=Clock()).settings == ServerSettings()
    assert TLSJSONClientFactory("pw", reactor=Clock()).settings == ClientSettings()
    assert Server("pw", reactor=Clock()).settings == ServerSettings()
    assert Client("h", 1, "pw", tlsOptions=object(), reactor=Clock()).settings == ClientSettings()


def test_overrides() -> None:
    """
    Settings are given whole, by name, or both (the names win).
    """
    base = ServerSettings(requestTimeout=3)
    factory = TLSJSONServerFactory("pw", base, reactor=Clock(), authTimeout=4)
    assert (factory.settings.requestTimeout, factory.settings.authTimeout) == (3, 4)
    server = Server("pw", settings=base, reactor=Clock(), requestTimeout=5)
    assert server.settings.requestTimeout == 5 and server.factory.settings is server.settings
    client = Client("h", 1, "pw", tlsOptions=object(), reactor=Clock(), reconnectInterval=2)
    assert client.factory.reconnectInterval == 2


@pytest.mark.parametrize("make, message", [
    (lambda: ServerSettings(requestTimeout=-1),
     "^requestTimeout must be a number of seconds >= 0, not -1$"),
    (lambda: ServerSettings(requestTimeout=float("nan")), "requestTimeout"),
    (lambda: ServerSettings(authTimeout=float("inf")), "authTimeout"),
    (lambda: ServerSettings(keepAliveTimeout=True), "keepAliveTimeout"),
    (lambda: ServerSettings(maxLineLength=0), "^maxLineLength must be a number of bytes >= 1"),
    (lambda: ServerSettings(maxBufferedBytes=1.5),  # type: ignore[arg-type]  # refused
     "maxBufferedBytes"),
    (lambda: ServerSettings(keepAliveTimeout=0),
     "^keepAliveTimeout must be > 0 when keepAliveInterval is set$"),
    (lambda: ClientSettings(connectTimeout=0), "^connectTimeout must be a number of seconds > 0"),
    (lambda: TLSJSONServerFactory("pw", requestTimout=1),
     "^ServerSettings has no setting 'requestTimout'; it has authFailureDelay, "),
    (lambda: TLSJSONClientFactory("pw", keepAliveInterval=1),
     "ClientSettings has no setting 'keepAliveInterval'"),
    (lambda: TLSJSONServerFactory("pw", ClientSettings()),  # type: ignore[arg-type]
     "settings must be ServerSettings"),
    (lambda: TLSJSONServerFactory(""), "password must be a non-empty string"),
    (lambda: Client("h", 0, "pw", tlsOptions=object()),
     "^port must be a port number from 1 to 65535, not 0$"),
    (lambda: Client("", 1, "pw", tlsOptions=object()), "host"),
])
def test_refused(make: Any, message: str) -> None:
    """
    A bad setting is refused where it is made, with L{InvalidSetting} (a
    C{ValueError}) naming it and saying what it takes.
    """
    with pytest.raises(InvalidSetting, match=message):
        make()


def test_frozen() -> None:
    """
    Settings cannot change under a running connection.
    """
    settings = ServerSettings()
    with pytest.raises(AttributeError):
        settings.requestTimeout = 1  # type: ignore[misc]


def _human(value: Any, kind: Any) -> str:
    """
    A default as the README writes it: seconds as numbers, sizes in MiB.
    """
    if kind.unit == BYTES.unit and value and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)} MiB"
    return f"{value:g}"


def _tableRows(title: str) -> List[List[str]]:
    """
    The rows of the README's list-table under the section C{title}.
    """
    text = (REPOSITORY / "README.rst").read_text()
    section = text[text.index(title):]
    table = section[section.index(".. list-table::"):]
    table = table[:table.index("\n\n", table.index("* -"))]
    rows = []
    for row in table.split("   * - ")[1:]:
        rows.append([cell.strip() for cell in row.split("\n     - ")])
    return rows


def test_readmeTwistdTable() -> None:
    """
    The README's table of C{twistd tlsjson} options gives each setting's
    default, as C{--help} does.
    """
    rows = {row[0]: row for row in _tableRows("Running a server: ``twistd tlsjson``")}
    help = Options().__str__()
    for spec in ServerSettings.specifications():
        option = spec.metadata["option"]
        row = rows[f"``--{option}``"]
        assert row[2].startswith(_human(spec.default, spec.metadata["kind"])), row
        assert re.search(rf"--{option}=\s+[^[]*\[default:\s+{spec.default}\]", help)


def test_readmeOptionsTable() -> None:
    """
    The README's table of the API's options gives each setting's default.
    """
    rows: Dict[str, List[str]] = {}
    for row in _tableRows("Options, mapped from tls-json"):
        for name in re.findall(r"``(\w+)``", row[1].split(" (")[0]):
            rows[name] = row
    for settings in (ServerSettings, ClientSettings):
        for spec in settings.specifications():
            row = rows[spec.name]
            assert row[2].startswith(_human(spec.default, spec.metadata["kind"])), row

"""
The real C{twistd tlsjson}, started as a process by the tests and stopped
cleanly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from txtlsjson import Client, Server

from .conftest import PKI
from .inreactor import inReactor
from .processes import REPOSITORY, spawn, tlsjson, twistd


@pytest.fixture
def passwordFile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


def serverArgs(pki: PKI, passwordFile: Path, port: int = 0) -> list:  # type: ignore[type-arg]
    return ["-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", str(port),
            "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
            "--key", str(pki.serverKey), "--password-file", str(passwordFile)]


@inReactor
async def test_pluginListed() -> None:
    """
    The plugin installs with the package and shows in C{twistd --help}.
    """
    outcome = await twistd("--help").ended
    assert outcome.code == 0
    assert re.search(r"tlsjson\s+A tls-json server", outcome.out), outcome.out


@inReactor
async def test_serveAndStop(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    C{twistd -n tlsjson} serves a client over TLS, logs what happens (never
    the password), and shuts down cleanly on SIGTERM, closing the client.
    """
    process = twistd(*serverArgs(pki, passwordFile), cwd=tmp_path)
    await process.waitFor("tls-json server listening on")
    port = int(re.search(r"listening on .*port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]

    client = Client("localhost", port, "s3cret", ca=[pki.caCert])
    closed = _next(client, "close")
    await client.connect()
    client.send({"hello": "log"})
    assert await client.request({"echo": "me"}) == {"echo": "me"}
    await process.waitFor("message from client 0")
    process.signal("TERM")
    outcome = await process.ended
    await closed
    assert _stoppedBySignal(outcome), outcome
    assert "client 0 authenticated from 127.0.0.1:" in outcome.out
    assert "Server Shut Down" in outcome.out
    assert "Traceback" not in outcome.out + outcome.err
    assert "s3cret" not in outcome.out + outcome.err


def _stoppedBySignal(outcome: Any) -> bool:
    """
    twistd ends a SIGTERM'd run by re-raising the signal on itself (so its
    exit status tells how it stopped), after shutting down in order.
    """
    return outcome.signal == 15 and "Server Shut Down" in outcome.out


def _next(emitter: Any, name: str) -> Any:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    d: Deferred[None] = Deferred()
    def fire(*args: Any) -> None:
        if not d.called:
            d.callback(None)

    emitter.on(name, fire)
    return d.addTimeout(20, reactor)


@inReactor
async def test_failedPasswordLogged(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A failed password attempt is logged with the peer address, and the
    attempted password is not.
    """
    process = twistd(*serverArgs(pki, passwordFile), cwd=tmp_path)
    await process.waitFor("tls-json server listening on")
    port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
    client = Client("localhost", port, "guess-one", ca=[pki.caCert])
    with pytest.raises(Exception, match="incorrect password"):
        await client.connect()
    await process.waitFor("failed password attempt from 127.0.0.1:")
    process.signal("TERM")
    outcome = await process.ended
    assert _stoppedBySignal(outcome), outcome
    assert "guess-one" not in outcome.out + outcome.err


@inReactor
async def test_portInUse(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A port in use ends twistd with exit 1 and one line naming the port.
    """
    holder = Server("x", certificate=pki.serverCert, privateKey=pki.serverKey)
    await holder.listen(0, "127.0.0.1")
    port = holder.port
    try:
        outcome = await twistd(*serverArgs(pki, passwordFile, port),  # type: ignore[arg-type]
                               cwd=tmp_path).ended
    finally:
        await holder.close()
    assert outcome.code == 1
    assert f"cannot listen on TLS port 127.0.0.1:{port}" in outcome.out
    assert "Address already in use" in outcome.out
    assert "Traceback" not in outcome.out + outcome.err


@pytest.mark.parametrize("change, message", [
    (lambda a: a[:-2], "no password"),
    (lambda a: [x if x != a[a.index("--cert") + 1] else "/nonexistent.crt" for x in a],
     "cannot read certificate file '/nonexistent.crt'"),
    (lambda a: a + ["--listen", "bogus:1"], "bad --listen endpoint 'bogus:1'"),
])
@inReactor
async def test_startupErrors(pki: PKI, passwordFile: Path, tmp_path: Path, change: Any,
                             message: str) -> None:
    """
    Missing password, unreadable certificate, bad endpoint: exit 1 with one
    line on stderr, no traceback.
    """
    outcome = await twistd(*change(serverArgs(pki, passwordFile)), cwd=tmp_path).ended
    assert outcome.code == 1
    assert outcome.err.strip().splitlines() == [f"twistd tlsjson: {outcome.err.strip()[16:]}"]
    assert message in outcome.err


@inReactor
async def test_devServer() -> None:
    """
    C{twistd -n tlsjson --dev}, from the checkout, serves with the dev
    certificate and password on 127.0.0.1 -- what the README's first command
    starts (there on port 8888; here on a free port, so that a server a
    developer left running does not get in the way).
    """
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--dev", "--port", "0",
                     cwd=REPOSITORY)
    await process.waitFor("tls-json server listening on")
    port = int(re.search(r"host='127.0.0.1', port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
    password = (REPOSITORY / "certs" / "dev-password").read_text().strip()
    client = Client("localhost", port, password, ca=[REPOSITORY / "certs" / "localhost.crt"])
    await client.connect()
    assert await client.request({"dev": True}) == {"dev": True}
    await client.disconnect()
    process.signal("TERM")
    outcome = await process.ended
    assert _stoppedBySignal(outcome), outcome
    assert "never use them in production" in outcome.out


@inReactor
async def test_daemonized(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    Without C{-n}, twistd daemonizes with its pidfile and logfile; the
    daemon serves, and stops on SIGTERM, removing its pidfile.
    """
    import os
    import signal

    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    pidfile, logfile = tmp_path / "tlsjson.pid", tmp_path / "tlsjson.log"
    args = ["--pidfile", str(pidfile), "--logfile", str(logfile)] + serverArgs(pki, passwordFile)[3:]
    parent = await twistd(*args, cwd=tmp_path).ended
    assert parent.code == 0, parent
    pid = int(pidfile.read_text())
    try:
        log = logfile.read_text()
        port = int(re.search(r"listening on .*port=(\d+)", log).group(1))  # type: ignore[union-attr]
        client = Client("localhost", port, "s3cret", ca=[pki.caCert])
        await client.connect()
        assert await client.request({"daemon": True}) == {"daemon": True}
        await client.disconnect()
    finally:
        os.kill(pid, signal.SIGTERM)
    for _ in range(200):  # bounded: at most 10 s
        if not pidfile.exists():
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert not pidfile.exists()
    assert "Server Shut Down" in logfile.read_text()


@inReactor
async def test_daemonStartupFailure(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A daemon that cannot listen makes the parent fail with its message.
    """
    holder = Server("x", certificate=pki.serverCert, privateKey=pki.serverKey)
    await holder.listen(0, "127.0.0.1")
    port = holder.port
    try:
        args = ["--pidfile", str(tmp_path / "p.pid"), "--logfile", str(tmp_path / "l.log")]
        args += serverArgs(pki, passwordFile, port)[3:]  # type: ignore[arg-type]
        outcome = await twistd(*args, cwd=tmp_path).ended
    finally:
        await holder.close()
    assert outcome.code == 1
    assert "cannot listen on TLS port" in outcome.err
    assert "Traceback" not in outcome.err


@inReactor
async def test_pluginCheapToImport() -> None:
    """
    Importing the plugin module (which twistd does for every plugin) does
    not import txtlsjson itself.
    """
    import sys

    from .processes import spawn

    outcome = await spawn([sys.executable, "-c",
                           "import sys, twisted.plugins.txtlsjson_plugin as p; "
                           "print(p.tlsjson.tapname, 'txtlsjson' in sys.modules)"]).ended
    assert outcome.out.split() == ["tlsjson", "False"], outcome


@inReactor
async def test_devAnywhere(tmp_path: Path) -> None:
    """
    Outside a checkout, C{twistd tlsjson --dev} makes a throwaway
    certificate and password in a per-user directory (saying where), and
    C{tlsjson request --dev} finds the same ones.
    """
    from .processes import tlsjson

    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    work = tmp_path / "elsewhere"
    work.mkdir()
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--dev", "--port", "0",
                     cwd=work, env=env)
    try:
        await process.waitFor("tls-json server listening on")
        port = re.search(r"host='127.0.0.1', port=(\d+)", process.text()).group(1)  # type: ignore[union-attr]
        made = tmp_path / "data" / "txtlsjson" / "dev"
        assert f"password in {made / 'dev-password'} (made now)" in process.text()
        assert (made / "dev-password").stat().st_mode & 0o777 == 0o600
        outcome = await tlsjson("request", "--dev", "--port", port, '{"dev": "anywhere"}',
                                env=env, cwd=work).ended
        assert outcome.code == 0, outcome
        assert outcome.out.strip() == '{"dev": "anywhere"}'
    finally:
        process.signal("TERM")
        await process.ended


@inReactor
async def test_perClientCredentials(pki: PKI, tmp_path: Path) -> None:
    """
    The how-to of the README, with real processes: C{tlsjson credentials
    add} makes a secret for each client; C{twistd tlsjson --credentials}
    serves a Node.js tls-json client and a txtlsjson client with their own
    secrets, and logs who each is; after C{tlsjson credentials remove} and
    a C{SIGHUP}, the revoked client's connection is closed and the other
    stays.  No secret is ever logged.
    """
    from .test_node_interop import PEER, node

    credentials = tmp_path / "clients"
    secrets = {}
    for name in ("sensor-1", "node-bot"):
        added = await tlsjson("credentials", "add", name, str(credentials)).ended
        assert added.code == 0, added
        secrets[name] = added.out.strip()
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", "0",
                     "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
                     "--key", str(pki.serverKey), "--credentials", str(credentials), cwd=tmp_path)
    nodeClient = None
    try:
        await process.waitFor("tls-json server listening on")
        port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
        client = Client("localhost", port, secrets["sensor-1"], ca=[pki.caCert])
        closed = _next(client, "close")
        await client.connect()
        assert await client.request({"echo": 1}) == {"echo": 1}
        await process.waitFor("as sensor-1")
        nodeClient = spawn([node(), PEER, "stay", str(port), str(pki.caCert), secrets["node-bot"]])
        await nodeClient.waitFor('{"authenticated":true}')
        await process.waitFor("as node-bot")

        removed = await tlsjson("credentials", "remove", "sensor-1", str(credentials)).ended
        assert removed.code == 0, removed
        process.signal("HUP")
        await closed
        await process.waitFor("credentials reloaded from")
        assert re.search(r"client 0 \(sensor-1 at 127\.0\.0\.1:\d+\): the credential of sensor-1 "
                         r"was revoked", process.text()), process.text()
        assert "1 connection(s) of revoked clients closed" in process.text()
        assert '"close"' not in nodeClient.text()
        process.signal("TERM")
        outcome = await process.ended
        await nodeClient.waitFor('{"close":true}')
    finally:
        process.signal("KILL")
        if nodeClient is not None:
            nodeClient.signal("KILL")
    assert _stoppedBySignal(outcome), outcome
    for secret in secrets.values():
        assert secret.partition(".")[2] not in outcome.out + outcome.err


@inReactor
async def test_badCredentialsOnReloadKeepTheOldOnes(pki: PKI, tmp_path: Path) -> None:
    """
    A credentials file made bad before a C{SIGHUP} is reported with its bad
    line; the clients it had stay served and can still connect.
    """
    credentials = tmp_path / "clients"
    added = await tlsjson("credentials", "add", "sensor-1", str(credentials)).ended
    secret = added.out.strip()
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", "0",
                     "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
                     "--key", str(pki.serverKey), "--credentials", str(credentials), cwd=tmp_path)
    try:
        await process.waitFor("tls-json server listening on")
        port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
        credentials.write_text(credentials.read_text() + "garbage\n")
        process.signal("HUP")
        await process.waitFor("credentials not reloaded, the previous ones stay in force")
        assert "line 4: expected NAME KEYID HASH, found 1 field(s)" in process.text()
        client = Client("localhost", port, secret, ca=[pki.caCert])
        await client.connect()
        await client.disconnect()
        process.signal("TERM")
        await process.ended
    finally:
        process.signal("KILL")


@inReactor
async def test_credentialsReplacePassword(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    C{--credentials} with C{--password-file} is refused with one line, and
    so is a credentials file that is not there.
    """
    both = await twistd(*serverArgs(pki, passwordFile), "--credentials", "x", cwd=tmp_path).ended
    assert both.code != 0 and "it replaces --password-file" in both.out + both.err
    missing = await twistd("-n", "--pidfile=", "tlsjson", "--port", "0", "--cert", str(pki.serverCert),
                           "--key", str(pki.serverKey), "--credentials", str(tmp_path / "none"),
                           cwd=tmp_path).ended
    assert missing.code != 0
    assert "no credentials file" in missing.out + missing.err
    assert "Traceback" not in missing.out + missing.err

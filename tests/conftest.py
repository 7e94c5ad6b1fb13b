"""
Shared fixtures: a small PKI generated for the test run, and the log events
a test emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typing import Iterator, List

import pytest
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from txtlsjson.certs import certificatePEM, makeCertificate, writeKeyPair

from .processes import killLeftovers

# trial's asynchronous TestCase runs under trial, not under pytest-twisted
# (pytest cannot drive its Deferred-returning setUp); the README's test
# command runs it with trial.
collect_ignore = ["test_trial_compat.py"]


@dataclass
class PKI:
    """
    Files of a throw-away CA and certificates signed by it.
    """

    caCert: Path
    serverKey: Path
    serverCert: Path
    wrongNameKey: Path
    wrongNameCert: Path
    noSANKey: Path
    noSANCert: Path
    clientKey: Path
    clientCert: Path
    otherCACert: Path
    strangerKey: Path
    strangerCert: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    caKey, ca = makeCertificate("txtlsjson test CA", [], isCA=True, keyType="ecdsa")
    (d / "ca.crt").write_bytes(certificatePEM(ca))
    issued = {}
    for name, cn, sans in [
        ("server", "localhost", ["localhost", "127.0.0.1"]),
        ("wrongname", "other.example", ["other.example"]),
        ("nosan", "localhost", []),
        ("client", "worker-1", ["worker-1"]),
    ]:
        key, cert = makeCertificate(cn, sans, issuer=(ca, caKey), keyType="ecdsa",
                                    clientAuth=name == "client")
        issued[name] = writeKeyPair(d, name, key, cert)
    otherKey, otherCA = makeCertificate("another CA", [], isCA=True, keyType="ecdsa")
    (d / "otherca.crt").write_bytes(certificatePEM(otherCA))
    strangerKey, stranger = makeCertificate("worker-2", ["worker-2"], issuer=(otherCA, otherKey),
                                            keyType="ecdsa", clientAuth=True)
    issued["stranger"] = writeKeyPair(d, "stranger", strangerKey, stranger)
    return PKI(
        caCert=d / "ca.crt",
        serverKey=issued["server"][0], serverCert=issued["server"][1],
        wrongNameKey=issued["wrongname"][0], wrongNameCert=issued["wrongname"][1],
        noSANKey=issued["nosan"][0], noSANCert=issued["nosan"][1],
        clientKey=issued["client"][0], clientCert=issued["client"][1],
        otherCACert=d / "otherca.crt",
        strangerKey=issued["stranger"][0], strangerCert=issued["stranger"][1],
    )


@pytest.fixture(autouse=True)
def noProcessLeftBehind() -> Iterator[None]:
    """
    After each test, kill what it started and left running (a test that
    fails half-way would otherwise leave its servers behind).
    """
    yield
    killLeftovers()


@pytest.fixture
def logged() -> Iterator[List[LogEvent]]:
    """
    The log events emitted during the test.
    """
    events: List[LogEvent] = []

    @provider(ILogObserver)
    def observer(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)

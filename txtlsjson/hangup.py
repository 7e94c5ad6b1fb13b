"""
Running something in the reactor on C{SIGHUP}, while a service runs: how
C{twistd tlsjson --credentials} reloads its credentials file, and how a
C{--workers} parent passes the signal on to its workers.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable, Optional

#: What C{signal.signal} returns and takes as a handler.
_Handler = Any


class OnHangup:
    """
    While installed, each C{SIGHUP} calls a function in the reactor's
    thread (never inside the signal handler itself); uninstalling puts the
    previous handler back.
    """

    def __init__(self, reactor: Any, callback: Callable[[], None]) -> None:
        """
        @param reactor: the reactor to call C{callback} in.
        @param callback: what to do on each C{SIGHUP}.
        """
        self._reactor = reactor
        self._callback = callback
        self._previous: Optional[_Handler] = None
        self.installed = False

    def install(self) -> None:
        """
        Handle C{SIGHUP} from now on (possible only in the main thread).
        """
        if not self.installed:
            self._previous = signal.signal(signal.SIGHUP, self._received)
            self.installed = True

    def uninstall(self) -> None:
        """
        Put back the handler that was there before L{install}.
        """
        if self.installed:
            signal.signal(signal.SIGHUP, self._previous)
            self.installed = False

    def _received(self, number: int, frame: Optional[FrameType]) -> None:
        self._reactor.callFromThread(self._callback)

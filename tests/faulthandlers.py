"""
Handlers for the twistd servers the fault tests start (loaded with
C{--handler tests.faulthandlers:NAME}).
"""

from __future__ import annotations

from typing import Any, Optional


class Holder:
    """
    Answers each request with C{{"echo": request}}, except requests with a
    true C{hold}: those are never answered.
    """

    def __init__(self, server: Any) -> None:
        self.server = server

    def request(self, connectionId: int, request: Any) -> Optional[Any]:
        if request.get("hold"):
            return None
        return {"echo": request}

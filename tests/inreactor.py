"""
pytest-twisted, with type hints (it ships none): the one place the tests
import it.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, TypeVar

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred

_T = TypeVar("_T")


def inReactor(test: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """
    Run an C{async def} test in the reactor pytest-twisted runs
    (C{pytest_twisted.ensureDeferred}).
    """
    decorated: Callable[..., Any] = pytest_twisted.ensureDeferred(test)
    return decorated


def blockOn(d: "Deferred[_T]") -> _T:
    """
    Wait for C{d} from a synchronous fixture (C{pytest_twisted.blockon}).
    """
    result: _T = pytest_twisted.blockon(d)
    return result

"""
Password guessing paced for a whole cluster: one node per address decides.

Each address's password attempts are paced by one node -- its owner,
chosen by rendezvous hashing over the nodes each node knows, so all agree
once they know the same nodes -- with that node's
L{AuthenticationThrottle}.  The node an attempt arrives on asks the owner,
checks the password when let through, and tells the owner how it ended; a
connection that closes meanwhile withdraws its attempt.  Spreading guesses
over workers or hosts then does not multiply an attacker's rate.  When the
owner is gone or cannot be reached, the attempt is paced locally.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from txtlsjson.errors import TooManyAttempts
from txtlsjson.throttle import AuthenticationThrottle
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.cluster import Cluster


class ClusterPacer:
    """
    A L{PasswordPacer<txtlsjson.throttle.PasswordPacer>} for a server in a
    cluster.

    @ivar throttle: this node's own throttle, for the addresses it owns and
        when the owner is unreachable.
    """

    def __init__(self, cluster: "Cluster", throttle: AuthenticationThrottle) -> None:
        self._cluster = cluster
        self.throttle = throttle
        # Attempts this node owns for others, by asker and number.
        self._attempts: Dict[Tuple[int, int], "Deferred[None]"] = {}
        # Attempts let through by another node, by address: whom to tell
        # when each is answered.
        self._granted: Dict[str, List[int]] = {}

    def ownerOf(self, key: str) -> int:
        """
        The node that paces password attempts from address C{key}: the same
        on every node that knows the same nodes (rendezvous hashing), this
        node when it knows no other.
        """
        cluster = self._cluster
        candidates = [cluster.serial, *cluster.nodes] if cluster.connected else [cluster.serial]
        return max(candidates, key=lambda node: zlib.crc32(f"{node}:{key}".encode()))

    def attempt(self, key: str) -> "Deferred[None]":
        """
        A password attempt from C{key}, paced by its owner node: a Deferred
        that fires when the attempt may be checked (see
        L{AuthenticationThrottle.attempt}); cancelling it withdraws it.
        When the owner is gone, the attempt is paced here.
        """
        cluster = self._cluster
        local = self.throttle
        owner = self.ownerOf(key)
        if owner == cluster.serial:
            return local.attempt(key)
        question: JSONObject = {"op": "attempt", "key": key}
        asked = cluster.askNode(owner, question, untimed=True)
        rid = question.get("rid")

        def withdraw(d: "Deferred[None]") -> None:
            asked.cancel()
            cluster.publishTo(owner, {"op": "withdraw", "asker": cluster.serial, "rid": rid})

        result: Deferred[None] = Deferred(withdraw)

        def granted(_: object) -> None:
            self._granted.setdefault(key, []).append(owner)
            result.callback(None)

        def refused(failure: Failure) -> None:
            if result.called:
                return
            if failure.check(TooManyAttempts):
                result.errback(failure)
                return
            # The owner is gone or unreachable: pace it here.
            local.attempt(key).chainDeferred(result)

        asked.addCallbacks(granted, refused)
        return result

    def finished(self, key: str, succeeded: bool) -> None:
        """
        The attempt from C{key} that was let through has been answered.
        """
        cluster = self._cluster
        local = self.throttle
        owners = self._granted.get(key)
        if not owners:
            local.finished(key, succeeded)
            return
        owner = owners.pop(0)
        if not owners:
            del self._granted[key]
        cluster.publishTo(owner, {"op": "finished", "key": key, "matched": succeeded})

    def ownAttempt(self, key: str, asker: int, rid: int) -> "Deferred[Any]":
        """
        Pace another node's password attempt from C{key} with this node's
        throttle.
        """
        try:
            attempt = self.throttle.attempt(key)
        except TooManyAttempts:
            return fail()
        self._attempts[(asker, rid)] = attempt
        attempt.addBoth(lambda result: (self._attempts.pop((asker, rid), None), result)[1])
        return attempt

    def settle(self, operation: JSONObject) -> None:
        """
        Another node says how an attempt this node let through ended, or
        withdraws one still waiting.
        """
        if operation["op"] == "finished":
            self.throttle.finished(operation["key"], bool(operation.get("matched")))
            return
        attempt = self._attempts.pop((operation.get("asker", -1), operation.get("rid", -1)), None)
        if attempt is not None and not attempt.called:
            attempt.cancel()

    def nodeGone(self, node: Optional[int]) -> None:
        """
        Withdraw the attempts C{node} (every node, for L{None}) was waiting
        for here.
        """
        for key in [key for key in self._attempts if node is None or key[0] == node]:
            self._attempts.pop(key).cancel()

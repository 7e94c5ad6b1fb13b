"""
Rooms: named groups of connections, free of I/O.

As socket.io's rooms: a connection joins and leaves rooms by name, a
message sent to a room reaches its members, and a connection that closes
leaves every room it was in.  This is the table; L{Server<txtlsjson.server.Server>}
does the sending.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Generic, Iterator, Set, TypeVar

_Member = TypeVar("_Member")


class Rooms(Generic[_Member]):
    """
    Which members are in which rooms, both ways.
    """

    __slots__ = ("_members", "_rooms")

    def __init__(self) -> None:
        self._members: Dict[str, Set[_Member]] = {}
        self._rooms: Dict[_Member, Set[str]] = {}

    def join(self, member: _Member, room: str) -> None:
        """
        Put C{member} in C{room} (again: no change).

        @raise TypeError: if C{room} is not a string.
        """
        if not isinstance(room, str):
            raise TypeError(f"a room is named by a string, not {room!r}")
        self._members.setdefault(room, set()).add(member)
        self._rooms.setdefault(member, set()).add(room)

    def leave(self, member: _Member, room: str) -> None:
        """
        Take C{member} out of C{room}, if it is in it.
        """
        members = self._members.get(room)
        if members is None or member not in members:
            return
        members.discard(member)
        if not members:
            del self._members[room]
        rooms = self._rooms[member]
        rooms.discard(room)
        if not rooms:
            del self._rooms[member]

    def forget(self, member: _Member) -> None:
        """
        Take C{member} out of every room (it is gone).
        """
        for room in self._rooms.pop(member, ()):
            members = self._members[room]
            members.discard(member)
            if not members:
                del self._members[room]

    def members(self, room: str) -> FrozenSet[_Member]:
        """
        @return: who is in C{room}.
        """
        return frozenset(self._members.get(room, ()))

    def roomsOf(self, member: _Member) -> FrozenSet[str]:
        """
        @return: the rooms C{member} is in.
        """
        return frozenset(self._rooms.get(member, ()))

    def __iter__(self) -> Iterator[str]:
        """
        @return: the rooms that have members.
        """
        return iter(list(self._members))

    def __len__(self) -> int:
        """
        @return: how many rooms have members.
        """
        return len(self._members)

"""An order's stream trail: its status events by ``seq``, merged from the hub (live) and PostgreSQL
(stored), with gaps, corrections and catch-up handled in one place.

Events travel as the JSON objects clients receive (:data:`Message`). The hub keeps one
:class:`Trail` per order and fans out what :meth:`Trail.publish` returns; a Serve replica keeps one
per order it streams (``api/subscriptions.py``); each WebSocket sends through a :class:`Delivery`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from engine.lifecycle import TERMINAL

Message = dict[str, Any]
"""A status event as streamed (``orderId``, ``seq``, ``status``, ...; ``correction`` when it replaced
an earlier event at its seq)."""


class Signal(Enum):
    """What a stream's queue carries besides events."""

    CATCH_UP = "catch-up"
    """The hub failed or restarted and may have lost events: read the stored trail now."""
    GONE = "gone"
    """The client went away: the stream ends."""


def is_terminal(message: Message) -> bool:
    return bool(message["status"] in TERMINAL)


def is_whole(messages: Iterable[Message]) -> bool:
    """True if ``messages`` hold every seq from 1 to the latest (each once): nothing to read elsewhere."""
    seqs = {message["seq"] for message in messages}
    return bool(seqs) and min(seqs) == 1 and max(seqs) == len(seqs)


class Trail:
    """One order's events, by seq."""

    __slots__ = ("_by_seq",)

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        self._by_seq: dict[int, Message] = {}
        self.merge(messages)

    def __len__(self) -> int:
        return len(self._by_seq)

    @property
    def latest(self) -> Message | None:
        return self._by_seq[max(self._by_seq)] if self._by_seq else None

    def ordered(self) -> list[Message]:
        return [self._by_seq[seq] for seq in sorted(self._by_seq)]

    def is_whole(self) -> bool:
        return is_whole(self._by_seq.values())

    def merge(self, messages: Iterable[Message]) -> None:
        """Add what is not known yet; a seq already held keeps its (newer) event."""
        for message in messages:
            self._by_seq.setdefault(message["seq"], message)

    def apply(self, message: Message) -> None:
        """A live event: a correction replaces its seq and drops every later one (they never happened)."""
        if message.get("correction"):
            for seq in [seq for seq in self._by_seq if seq >= message["seq"]]:
                del self._by_seq[seq]
        self._by_seq[message["seq"]] = message

    def publish(self, message: Message) -> Message | None:
        """Record an event as the hub receives it; return what to fan out, or None for a replay.

        Events are published before they are persisted: a run that died in between left events here
        that PostgreSQL never got. The resumed run's event at such a seq is the truth: it goes out
        marked ``correction`` and replaces the events from its seq on.
        """
        seq = message["seq"]
        if self._by_seq and max(self._by_seq) >= seq:
            same = self._by_seq.get(seq)
            if same is not None and same["status"] == message["status"]:
                return None  # a replayed publish (an executor's retry): already delivered
            message = {**message, "correction": True}
        self.apply(message)
        return message


@dataclass
class Delivery:
    """What one stream has sent: it sends each seq once, in order, corrections again, and ends after
    the terminal event."""

    last: int = 0
    done: bool = False

    def has_gap(self, message: Message) -> bool:
        """True if ``message`` skips seqs this stream has not sent (they are in PostgreSQL)."""
        return bool(message["seq"] > self.last + 1)

    def take(self, messages: Iterable[Message]) -> list[Message]:
        """Of ``messages``, those to send now, in seq order, up to and including a terminal one."""
        out: list[Message] = []
        for message in sorted(messages, key=lambda m: m["seq"]):
            if self.done:
                break
            if message["seq"] <= self.last and not message.get("correction"):
                continue
            out.append(message)
            self.last = message["seq"]
            self.done = is_terminal(message)
        return out

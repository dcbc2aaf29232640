"""What a send can end in, and the capability every transport offers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eventaudit.events import CloudEvent


@dataclass(frozen=True)
class Delivered:
    """The receiver acknowledged the events (for the audit service: stored durably)."""

    detail: str = ""


@dataclass(frozen=True)
class RetryLater:
    """Not delivered, and worth trying again: connection errors, 5xx, 408, 429.

    ``after`` is the delay the receiver asked for (``Retry-After``), in seconds.
    """

    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Rejected:
    """Not delivered, and sending the same events again will not help (a 4xx about them)."""

    reason: str
    status: int | None = None


Outcome = Delivered | RetryLater | Rejected


class Sender(Protocol):
    """Sends events to one destination and says how it went.

    Implementations never raise for a delivery problem; they return the outcome.
    """

    async def send(self, events: Sequence[CloudEvent]) -> Outcome:
        """Deliver ``events`` in order and report the outcome.

        :class:`Delivered` means all of them were. Otherwise the outcome is that of the first
        event not delivered; a transport that sends events one by one may have delivered the
        ones before it, so a caller that sends them again relies on the receiver's dedupe.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class PipelinedSender(Sender, Protocol):
    """A sender that sends many events at once and reports on each (Kafka: one record per event)."""

    async def send_each(self, events: Sequence[CloudEvent]) -> list[Outcome]:
        """Deliver ``events``; one outcome per event, in the same order. Never raises for a delivery problem."""
        ...

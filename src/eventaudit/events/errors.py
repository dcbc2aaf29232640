"""The one error type of the CloudEvents kit, and the failures it lists."""

from __future__ import annotations

from typing import NamedTuple

SPEC = "https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/"


class Failure(NamedTuple):
    """One broken rule: which attribute, what rule, where the spec says so.

    ``batch_index`` is the position of the event in a batch, ``None`` for a single event.
    ``section`` is a document and anchor relative to the CloudEvents 1.0.2 spec
    folder (:data:`SPEC`), e.g. ``spec.md#id``.
    """

    attribute: str | None
    rule: str
    section: str
    batch_index: int | None = None

    def __str__(self) -> str:
        where = f"[{self.batch_index}] " if self.batch_index is not None else ""
        what = f"{self.attribute}: " if self.attribute is not None else ""
        return f"{where}{what}{self.rule} ({self.section})"


class CloudEventError(ValueError):
    """Raised for anything that is not a valid CloudEvent; lists every failure found.

    Subclasses say what an HTTP or Kafka receiver answers differently:
    :class:`UnsupportedFormatError` (not a CloudEvents message we can read, 415)
    and :class:`EventTooLargeError` (over the caller's size limit, 413).
    """

    def __init__(self, failures: list[Failure] | tuple[Failure, ...]) -> None:
        self.failures: tuple[Failure, ...] = tuple(failures)
        super().__init__("; ".join(str(f) for f in self.failures))

    def at_index(self, index: int) -> CloudEventError:
        """The same error with every failure placed at ``index`` of a batch."""
        return type(self)([f._replace(batch_index=index) for f in self.failures])


class UnsupportedFormatError(CloudEventError):
    """The message uses a content type or event format this kit does not read."""


class EventTooLargeError(CloudEventError):
    """The message is over the size limit the caller set."""


def fail(attribute: str | None, rule: str, section: str) -> CloudEventError:
    """A :class:`CloudEventError` with a single failure."""
    return CloudEventError([Failure(attribute, rule, section)])

"""The CloudEvents kit: the event, its JSON format, and the HTTP and Kafka bindings.

It imports no web framework, ORM or broker client; everything else in eventaudit
builds on it, and it builds on nothing of ours.
"""

from eventaudit.events.errors import CloudEventError, EventTooLargeError, Failure, UnsupportedFormatError
from eventaudit.events.event import SPECVERSION, CloudEvent

__all__ = [
    "SPECVERSION",
    "CloudEvent",
    "CloudEventError",
    "EventTooLargeError",
    "Failure",
    "UnsupportedFormatError",
]

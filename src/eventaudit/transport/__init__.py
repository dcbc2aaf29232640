"""Transports: the only code that moves CloudEvents over the wire.

A sender takes events, encodes them with a binding from ``eventaudit.events`` and
does the I/O; it never encodes a header itself. Every send ends in one
:class:`Outcome`: delivered, retry later (the receiver or the network may recover),
or rejected for good (the receiver says the event itself is bad). Callers decide
what to do with each; the transport does not retry on its own.
"""

from eventaudit.transport.outcome import Delivered, Outcome, PipelinedSender, Rejected, RetryLater, Sender

__all__ = ["Delivered", "Outcome", "PipelinedSender", "Rejected", "RetryLater", "Sender"]

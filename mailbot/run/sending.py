"""One message for the sink, and what sending it can come to: what the delivery steps
(mailbot.run.deliver) hand out and are handed back, whoever sends.

A module of its own, importing nothing of the store or SQLAlchemy, because the courier's
helper process (mailbot.run.courier_lines) unpickles these values: it starts while the pass
is deciding and must be ready to send soon after, so it imports only what sending needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailbot.transport.seams import (
    PartiallyDelivered,
    PermanentDeliveryError,
    SinkUnavailable,
    TemporaryDeliveryError,
)

# What a sink may raise for one message; the delivery steps decide what each means.
DELIVERY_OUTCOMES = (SinkUnavailable, TemporaryDeliveryError, PartiallyDelivered,
                     PermanentDeliveryError)


@dataclass(frozen=True)
class Send:
    """One message for the sink (`Sink.send`'s arguments), and whether the store's last commits
    go to the disk first (`Store.sync`): the batch's decisions before its first reply, the last
    reply's "sent" mark before the next. Whoever sends does it, so that a courier waits for
    that fsync, not the pass."""

    envelope_from: str
    recipients: list[str]
    data: bytes
    message_id: str
    sync_first: bool = False
    # The message likely to come next (the next one due), which a courier may prepare while
    # this one is marked sent: all of it but its final dot (mailbot.run.courier).
    then: Send | None = None

    def go(self, sink: Any, sync: Callable[[], None]) -> None:
        if self.sync_first:
            sync()
        sink.send(self.envelope_from, self.recipients, self.data, self.message_id)


# What the sink's send came to: None (the server took it) or one of DELIVERY_OUTCOMES.
Outcome = Exception | None

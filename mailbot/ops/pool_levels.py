"""Keys left per system: every system of the catalogue, an empty one too (requests for it wait
until keys are imported), then any system the pool holds keys for that the catalogue no longer
names. One reading for the panel, the registry page and `mailbot keys levels`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mailbot.ruleset import Catalogue
from mailbot.store import Connection, Store


@dataclass(frozen=True)
class Level:
    system: str
    free: int  # keys available
    assigned: int  # keys issued (bound to a serial)
    in_catalogue: bool
    low: bool  # fewer free keys than the low-stock threshold

    @property
    def empty(self) -> bool:
        """No free key: a request for this system waits (pending) until keys are imported."""
        return self.free == 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "empty": self.empty}


def levels(conn: Connection, store: Store, catalogue: Catalogue, *,
           low_stock_threshold: int = 0) -> list[Level]:
    pool = store.pool_counts(conn)
    names = catalogue.names
    out = []
    for system in dict.fromkeys([*names, *sorted(pool)]):
        free, assigned = pool.get(system, (0, 0))
        out.append(Level(system, free, assigned, system in names,
                         free < low_stock_threshold))
    return out

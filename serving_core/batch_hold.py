"""How long the direct model (`<name>_direct`) keeps its instance after answering a batch.

Triton's dynamic batcher hands a free instance whatever has queued. Under a closed loop of
clients (each sends again once answered) that splits them: while a batch runs, the few clients
answered by the previous batch queue up, and as soon as the instance is free they run alone,
while the rest queue behind them. On ERNIE 3.0 Medium at 16 clients, batches of 1-10 texts
alternated with batches of 14-16, and a batch of 1 costs a fifth of a batch of 16. A queue delay
cannot mend it: it counts from the oldest request's arrival, and those waited through a
whole batch. A hold can: the step answers the batch at once, then keeps its instance for
`hold_ms`, so the clients it just answered send again and join the ones already queued.
Only a model whose answers go straight to clients gains: the ensemble's model step answers the
postprocess, and its clients come back later than a hold of a few ms lasts.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchHold:
    """After answering two or more requests at once, the step keeps its instance for `hold_ms`,
    never longer than `max_share` of the time the batch took: at most that share of
    throughput is spent waiting. A held batch's responses are sent one by one, which costs
    more than returning them together (5-8 ms against about 3 for 16 on Medium, docs/benchmarks.md), so
    fast engines behind slow clients serve more unheld. A lone request is never held (one
    client waits on nobody)."""

    hold_ms: float = 0.0  # 0: off
    max_share: float = 0.05

    def __post_init__(self):
        if self.hold_ms < 0:
            raise ValueError(f"hold_ms must be >= 0, got {self.hold_ms}")
        if not 0 <= self.max_share <= 1:
            raise ValueError(f"max_share must lie in [0, 1], got {self.max_share}")

    def seconds(self, requests: int, batch_seconds: float) -> float:
        """The hold after a batch of `requests` that took `batch_seconds`."""
        if requests < 2 or self.hold_ms <= 0:
            return 0.0
        return min(self.hold_ms / 1000, self.max_share * batch_seconds)

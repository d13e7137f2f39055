"""Joint intent + slot decoding (ERNIE 3.0 Tiny's JointErnie)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntentSlotSettings:
    intents: tuple[str, ...]
    slots: tuple[str, ...]
    scheme: str = "bio"

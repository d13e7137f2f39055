"""One plan per task: which models a build writes and how they are wired."""
from __future__ import annotations

from serving_core.interface import Task

from . import intent_slot, qa, seq_cls, token_cls
from .common import PlanInputs

PLANNERS = {Task.SEQ_CLS: seq_cls.plan, Task.TOKEN_CLS: token_cls.plan, Task.QA: qa.plan,
            Task.INTENT_SLOT: intent_slot.plan}

__all__ = ["PLANNERS", "PlanInputs"]

"""Everything that keeps mail until it is sent: the spool, the memory queue, the ledger.

Private: the rest of postbud imports only the names below, never a module inside.
``Outbox`` is what the adapters use, through ``Mailer.outbox``.
"""

from __future__ import annotations

from .admin import OutboxRow, OutboxStatus
from .db import DAMAGED_LEFT, SCHEMA_VERSION, Database, SchemaTooNew
from .gates import credential_hash
from .outbox import Outbox
from .queue import Item, Priority, PriorityName, Queue, QueueBusy
from .redis_state import RedisState
from .retry import DEFAULT_POLICY, RetryPolicy
from .salvage import is_damage
from .shutdown import first as at_exit_first
from .state import StateStore, StateUnavailable
from .stats import Stats

__all__ = [
    "DAMAGED_LEFT",
    "DEFAULT_POLICY",
    "SCHEMA_VERSION",
    "Database",
    "Item",
    "Outbox",
    "OutboxRow",
    "OutboxStatus",
    "Priority",
    "PriorityName",
    "Queue",
    "QueueBusy",
    "RedisState",
    "RetryPolicy",
    "SchemaTooNew",
    "StateStore",
    "StateUnavailable",
    "Stats",
    "at_exit_first",
    "credential_hash",
    "is_damage",
]

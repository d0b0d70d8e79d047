"""The routing table: which checkpoint serves a request, and which arm it is on.

A table is an immutable snapshot of the registry (`console_serving` and the registered checkpoints'
names). The gateway swaps in a new snapshot when the registry changes; a request routed on the old
one finishes on the arm it was given.

Stickiness: an agent's arm is a hash of (agent, rollout id) compared with the candidate's share, so
an agent stays on one arm for the whole rollout, and a new rollout (a new id) reshuffles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checkpoints.registry import named_checkpoints, serving

LIVE, CANDIDATE, PINNED, BASE = "live", "candidate", "pinned", "base"
UNPINNABLE = ("failed", "training")  # statuses whose rows name no usable checkpoint


@dataclass(frozen=True, slots=True)
class Target:
    """One checkpoint the gateway may forward to."""

    model_id: str
    storage_path: str


@dataclass(frozen=True, slots=True)
class Route:
    target: Target
    arm: str
    rollout_id: int | None = None


@dataclass(frozen=True, slots=True)
class RoutingTable:
    live: Target | None = None
    candidate: Target | None = None
    share: float = 0.0  # the candidate's share of agents
    rollout_id: int | None = None
    pinnable: Mapping[str, Target] = field(default_factory=dict)  # modelId and storagePath -> checkpoint

    def route(self, model: str, alias: str, agent: str) -> Route | None:
        """The route of a request for `model` by `agent`; None when the name is unknown, or names
        the alias while nothing is live (the caller decides between the base model and 503)."""
        if model == alias:
            if self.live is None:
                return None
            if self.candidate is not None and self.rollout_id is not None and \
                    on_candidate(agent, self.rollout_id, self.share):
                return Route(self.candidate, CANDIDATE, self.rollout_id)
            return Route(self.live, LIVE, self.rollout_id)
        target = self.pinnable.get(model)
        return Route(target, PINNED, self.rollout_id) if target is not None else None


def on_candidate(agent: str, rollout_id: int, share: float) -> bool:
    """Whether `agent` is in the candidate's share of rollout `rollout_id` (a uniform hash in [0, 1))."""
    digest = hashlib.sha256(f"{rollout_id}\x1f{agent}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def agent_identity(header: str | None, body: Mapping[str, Any]) -> str:
    """Who is asking: the `X-Agent-Id` header, else the body's `user`, else a hash of the first
    system message (an agent's system prompt names it), else 'anonymous'."""
    if header and header.strip():
        return header.strip()[:200]
    user = body.get("user")
    if isinstance(user, str) and user.strip():
        return user.strip()[:200]
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "system":
                content = message.get("content")
                text = content if isinstance(content, str) else repr(content)
                return "system:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return "anonymous"


async def read_table(conn: Any) -> RoutingTable:
    """The registry's current routing table (`console_serving` and every registered checkpoint)."""
    live = candidate = None
    share, rollout_id = 0.0, None
    for served in await serving(conn):
        target = Target(served.model_id, served.storage_path)
        if served.role == LIVE:
            live = target
        elif served.role == CANDIDATE:
            candidate, share, rollout_id = target, served.share, served.rollout_id
    pinnable: dict[str, Target] = {}
    for checkpoint in await named_checkpoints(conn):
        if checkpoint.status in UNPINNABLE or checkpoint.storage_path is None:
            continue
        target = Target(checkpoint.model_id, checkpoint.storage_path)
        pinnable[checkpoint.model_id] = target
        pinnable.setdefault(checkpoint.storage_path, target)
    return RoutingTable(live, candidate, share, rollout_id, pinnable)

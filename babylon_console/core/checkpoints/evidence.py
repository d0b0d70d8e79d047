"""Live A/B evidence during a rollout, from the game's own rows, and the gate that reads it.

Arms are attributed by what actually served each trajectory. First by the gateway's call log
(`console_gateway_calls`, `babylon-console gateway`): the sha256 of each recorded response
(`llm_call_logs.response`) matched to the `response_sha256` of a call the gateway served during this
rollout names the checkpoint that answered it; this works when the game logs its provider's name
(e.g. `huggingface`) as `llm_call_logs.model`. A hash that two checkpoints answered is ambiguous and
names none. Otherwise by the model named in the call (`llm_call_logs.model`) matched to
`trained_models."storagePath"` of the live model and of the rollout's candidate. A trajectory's arm
is the checkpoint that served most of its calls. Windows where both arms traded are paired: per
window, the candidate's mean P&L minus the live arm's; the readout is the mean of those
differences with its anytime-valid bounds (`core.stats.anytime_bounds`) and the
plain 95% confidence interval (Student's t over windows, shown for reference), the share of windows the
candidate won, and per arm the agents, windows, mean P&L, win rate (trajectories with P&L > 0),
judge score and drawdown.

Traffic: per arm, the gateway's requests of this rollout, their error rate (5xx: the upstream
refused, failed or timed out; 4xx are the client's) and p50/p99 latency.

Served-model truth: per window, the candidate's share of the served trajectories next to the share
the rollout asked for, and the checkpoint-like model names (`scheme://...`) the registry does not
know (scripted participants, names without a scheme such as `sim/momentum`, are neither arm); whether
the two arms' agents already differed before the rollout (`core.checkpoints.balance`).

Scoped to its rollout: each A/B rollout has an id (`core.checkpoints.registry`), and only the windows that
opened at or after it started by the database's clock count (every counted window closed after it
started, and none mixes the previous serving): a re-promotion starts at 0 paired windows.

The gate looks after every window, so it reads bounds that stay valid when looked at again and again,
on a bounded per-window statistic the heavy tails of P&L do not swamp: the share of (candidate, live)
agent pairs in which the candidate's agent out-earned, minus 1/2 (`core.stats.out_earn_share`), bounded
by betting (`core.stats.betting_bounds`; Waudby-Smith & Ramdas 2023, JRSS-B), one side per decision:
promotion reads the lower bound and rollback the upper bound, each a one-sided (1 - `alpha`) bound, so
each kind of error is held to `alpha` on its own. The plain mean P&L difference and its plain 95% CI
stay beside them, labelled: looked at every window it clears zero by chance far more often than 5%
(`benchmarks/rollout.py`, the null experiment). "promote" once the lower bound has stayed above zero
for `promote_after` consecutive windows (default 1: the bound holds at every look, so acting on its
first crossing keeps the error rate at `alpha`), "rollback" when its upper bound is below zero, the
candidate's mean drawdown passes `max_drawdown`, or its error rate through the gateway passes
`max_error_rate` over at least `min_requests` requests; "collecting" before `min_windows` paired
windows, "hold" otherwise (also while the bound is still unbounded)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from ..config import GateSettings
from ..game.store import GameStore
from ..game.windows import WINDOW_LENGTH, window_id_for, window_start_of
from ..jsonvalue import json_object
from ..stats import OUT_EARN, PairedDifference, anytime_bounds, betting_bounds, out_earn_share, paired_difference
from .balance import ArmBalance, balance_warning, pre_rollout_balance
from .registry import Served, last_ended_rollouts, named_checkpoints, rollout_start, serving

Verdict = Literal["none", "collecting", "hold", "promote", "rollback"]

class ArmStats(BaseModel):
    arm: Literal["live", "candidate"]
    model_id: str | None
    storage_path: str | None
    agents: int = 0
    trajectories: int = 0
    windows: int = 0
    mean_pnl: float | None = None
    win_rate: float | None = None  # trajectories with P&L > 0
    judge_score: float | None = None  # mean of the judged ones; None: none judged yet
    drawdown: float | None = None  # mean max drawdown (fraction), where the rows record it
    by_gateway: int = 0  # trajectories attributed through the gateway's call log (the rest: by model name)
    # the gateway's log of this rollout, this arm's calls
    requests: int = 0
    errors: int = 0  # 5xx answers (upstream refused, failed, timed out)
    error_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


class ArmTraffic(BaseModel):
    """One arm's calls through the gateway during a rollout."""
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None


class RolledBack(BaseModel):
    """A candidate's latest ended rollout, rolled back on the gate's evidence."""
    rollout_id: int
    candidate_model_id: str
    operator: str
    reasons: list[str]


class ServedWindow(BaseModel):
    window_id: str
    asked: float  # the candidate's share the rollout asked for
    served: float  # the candidate's share of the served trajectories
    trajectories: int


class ABReadout(BaseModel):
    rollout_id: int | None = None  # the rollout whose windows are counted
    started_at: datetime | None = None  # when it started, by the database's clock (market time)
    first_window: str | None = None  # the first window counted: the first that opened after it started
    candidate_model_id: str | None = None
    live_model_id: str | None = None
    asked_share: float = 0.0
    arms: list[ArmStats] = []
    difference: PairedDifference | None = None
    streak_above_zero: int = 0  # trailing windows whose anytime-valid lower bound (up to them) was above zero
    window_diffs: list[float] = []  # per paired window, in time order: candidate's mean P&L minus live's
    # per paired window: the share of (candidate, live) agent pairs the candidate's agent out-earned, minus 1/2
    window_scores: list[float] = []
    served: list[ServedWindow] = []
    unknown_models: list[str] = []
    verdict: Verdict = "none"
    reasons: list[str] = []
    warnings: list[str] = []
    # per candidate, its latest ended rollout when that was rolled back on evidence (a promotion reads it)
    rolled_back: list[RolledBack] = []
    balance: ArmBalance | None = None  # the arms' agents compared before the rollout (`core.checkpoints.balance`)

    @property
    def served_share(self) -> float | None:
        """The candidate's mean served share over the paired windows (None: none yet)."""
        return statistics.fmean(w.served for w in self.served) if self.served else None


@dataclass
class _Row:
    window_id: str
    agent_id: str
    model: str | None
    pnl: float | None
    judge: float | None
    drawdown: float | None
    via_gateway: bool = False  # its model came from the gateway's call log


@dataclass
class _Arm:
    rows: list[_Row] = field(default_factory=list)


_ROWS_SQL = """
WITH recent AS (
  -- every window since the rollout started: a sequence that dropped its oldest windows would test afresh
  -- at each look, and lose the validity it has under repeated looks
  SELECT DISTINCT "windowId" FROM trajectories WHERE "windowId" IS NOT NULL AND "windowId" >= $1
), calls AS (
  -- the checkpoint that served each call: the gateway's log of this rollout by the response's hash
  -- (the gateway hashes the UTF-8 text the same way), else the model the game named
  SELECT l."trajectoryId" AS trajectory_id, coalesce(m."storagePath", l.model) AS model,
         m."storagePath" IS NOT NULL AS via_gateway
  FROM llm_call_logs l JOIN trajectories t ON t."trajectoryId" = l."trajectoryId"
  LEFT JOIN LATERAL (
    SELECT min(g.model_id) AS model_id FROM console_gateway_calls g
    WHERE g.response_sha256 = encode(sha256(convert_to(l.response, 'UTF8')), 'hex') AND g.rollout_id = $2
      AND g.model_id IS NOT NULL
    HAVING count(DISTINCT g.model_id) = 1  -- the same text from both arms names neither
  ) g ON true
  LEFT JOIN trained_models m ON m."modelId" = g.model_id
  WHERE t."windowId" IN (SELECT "windowId" FROM recent)
), served AS (
  SELECT trajectory_id, model, bool_or(via_gateway) AS via_gateway,
         row_number() OVER (PARTITION BY trajectory_id ORDER BY count(*) DESC, model) AS rank
  FROM calls GROUP BY trajectory_id, model
)
SELECT t."windowId" AS window_id, t."agentId" AS agent_id, s.model, coalesce(s.via_gateway, false) AS via_gateway,
       t."finalPnL" AS pnl,
       -- our judge's latest score (never the game's own judge columns)
       (SELECT j.score FROM console_judgments j WHERE j.trajectory_id = t."trajectoryId" ORDER BY j.id DESC LIMIT 1)
         AS judge, t."metadataJson" AS metadata
FROM trajectories t LEFT JOIN served s ON s.trajectory_id = t."trajectoryId" AND s.rank = 1
WHERE t."windowId" IN (SELECT "windowId" FROM recent)
"""


# per arm of one rollout: 5xx are errors (the upstream refused, failed or timed out); 4xx are the client's
_TRAFFIC_SQL = """
SELECT arm, count(*) AS requests, count(*) FILTER (WHERE status >= 500) AS errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
FROM console_gateway_calls WHERE rollout_id = $1 AND arm IN ('live', 'candidate') GROUP BY arm
"""


async def gateway_traffic(pool: asyncpg.Pool | asyncpg.Connection, rollout_id: int | None) -> dict[str, ArmTraffic]:
    """Per arm ("live", "candidate"), the gateway's calls of rollout `rollout_id`."""
    if rollout_id is None:
        return {}
    return {r["arm"]: ArmTraffic(requests=r["requests"], errors=r["errors"], p50_ms=r["p50"], p99_ms=r["p99"])
            for r in await pool.fetch(_TRAFFIC_SQL, rollout_id)}


async def rolled_back(pool: asyncpg.Pool | asyncpg.Connection) -> list[RolledBack]:
    """The candidates whose latest ended rollout was rolled back on the gate's evidence (the audit
    row records a readout whose verdict was "rollback"); a rollback recorded without evidence is none."""
    found = []
    for r in await last_ended_rollouts(pool):
        evidence = json_object(r.evidence)
        if not (r.end_reason or "").startswith("rolled back") or evidence.get("verdict") != "rollback":
            continue
        reasons = [str(x) for x in evidence.get("reasons") or []] or [r.note or "no reason recorded"]
        found.append(RolledBack(rollout_id=r.id, candidate_model_id=r.candidate_model_id,
                                operator=r.operator or "?", reasons=reasons))
    return found


class GatewaysUp(BaseModel):
    """The gateways whose heartbeat is fresh: their counts per arm since they started (summed), and
    the rate of the calls they logged over the last minute."""
    up: int = 0
    seen: int = 0  # gateways ever recorded (0: none was ever run against this database)
    from_memory: int = 0  # routing from memory: their database was away
    per_minute: int = 0  # calls logged by them over the last minute
    arms: dict[str, dict[str, int]] = {}  # arm -> requests, errors (4xx/5xx), upstream_errors
    log_dropped: int = 0

    @property
    def rate_per_s(self) -> float:
        return self.per_minute / 60


_GATEWAYS_SQL = """
SELECT id, routing_source, stats, heartbeat_at > now() - make_interval(secs => $1) AND stopped_at IS NULL AS up
FROM console_gateways
"""


async def gateways_up(pool: asyncpg.Pool | asyncpg.Connection, fresh_s: float = 15.0) -> GatewaysUp:
    """The gateways that beat within `fresh_s` seconds, by the database's wall clock."""
    rows = await pool.fetch(_GATEWAYS_SQL, fresh_s)
    up = [r for r in rows if r["up"]]
    found = GatewaysUp(up=len(up), seen=len(rows), from_memory=sum(r["routing_source"] != "database" for r in up))
    for r in up:
        stats = json_object(r["stats"])
        found.log_dropped += int(stats.get("log_dropped") or 0)
        for arm, counts in json_object(stats.get("arms")).items():
            into = found.arms.setdefault(arm, {"requests": 0, "errors": 0, "upstream_errors": 0})
            for key in into:
                value = counts.get(key) if isinstance(counts, dict) else None
                into[key] += value if isinstance(value, int) else 0
    if up:
        found.per_minute = await pool.fetchval(
            "SELECT count(*) FROM console_gateway_calls WHERE at > now() - interval '60 seconds' "
            "AND gateway_id = ANY($1::text[])", [r["id"] for r in up])
    return found


def _drawdown(metadata: Any) -> float | None:
    return _finite(json_object(metadata).get("maxDrawdown"))


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def first_window_of(started: datetime) -> str:
    """The first window that opened at or after `started` (window ids sort in time order)."""
    start = window_start_of(started)
    return window_id_for(start if start >= started else start + WINDOW_LENGTH)


async def ab_readout(pool: asyncpg.Pool | asyncpg.Connection, gate: GateSettings | None = None,
                     serving_now: list[Served] | None = None) -> ABReadout:
    """The readout of the rollout in progress ("none": no rollout), counting the windows opened since it started."""
    gate = gate or GateSettings()
    served = {s.role: s for s in (serving_now if serving_now is not None else await serving(pool))}
    candidate, live = served.get("candidate"), served.get("live")
    if candidate is None:
        return ABReadout(live_model_id=live.model_id if live else None, rolled_back=await rolled_back(pool))
    started = None if candidate.rollout_id is None else await rollout_start(pool, candidate.rollout_id)
    known = {c.storage_path for c in await named_checkpoints(pool) if c.storage_path is not None}
    # a rollout without a record (written around the registry) has no start: no window counts
    rows = [] if started is None else [
        _Row(r["window_id"], r["agent_id"], r["model"], _finite(r["pnl"]), _finite(r["judge"]),
             _drawdown(r["metadata"]), r["via_gateway"])
        for r in await pool.fetch(_ROWS_SQL, first_window_of(started), candidate.rollout_id)]
    balance = None if live is None or started is None else await pre_rollout_balance(
        pool, started, *[{r.agent_id for r in rows if r.model == s.storage_path} for s in (candidate, live)])
    readout = readout_from_rows(rows, candidate=(candidate.model_id, candidate.storage_path),
                                live=(live.model_id, live.storage_path) if live else None,
                                asked=candidate.share, known=known, gate=gate, rollout_id=candidate.rollout_id,
                                started_at=started, traffic=await gateway_traffic(pool, candidate.rollout_id),
                                balance=balance)
    readout.rolled_back = await rolled_back(pool)
    return readout


class CachedReadout:
    """`ab_readout`, read again only when the rollout or the newest window changed since the last
    read: it reads every served trajectory of the recent windows, and the engine and the console
    look every few seconds while windows close once an hour (late rows of an older window wait for
    the next window). The gateway's traffic moves by the second: it is read again every
    `traffic_every_s` and judged with the rows already read."""

    def __init__(self, gate: GateSettings | None = None, traffic_every_s: float = 10.0) -> None:
        self.gate = gate or GateSettings()
        self.traffic_every_s = traffic_every_s
        self._key: tuple[Any, ...] | None = None
        self._readout: ABReadout | None = None
        self._traffic_at = 0.0

    async def get(self, pool: asyncpg.Pool) -> ABReadout:
        serving_now = await serving(pool)
        latest, rows = await GameStore(pool).newest_window()
        key = (tuple(serving_now), latest, rows)
        if key != self._key or self._readout is None:
            self._readout = await ab_readout(pool, self.gate, serving_now)
            self._key, self._traffic_at = key, time.monotonic()
        elif self._readout.rollout_id is not None and time.monotonic() - self._traffic_at >= self.traffic_every_s:
            self._traffic_at = time.monotonic()
            traffic = await gateway_traffic(pool, self._readout.rollout_id)
            if traffic != self._traffic(self._readout):
                self._readout = rejudged(self._readout, traffic, self.gate)
        return self._readout

    @staticmethod
    def _traffic(readout: ABReadout) -> dict[str, ArmTraffic]:
        return {a.arm: ArmTraffic(requests=a.requests, errors=a.errors, p50_ms=a.p50_ms, p99_ms=a.p99_ms)
                for a in readout.arms if a.requests}


def rejudged(readout: ABReadout, traffic: dict[str, ArmTraffic], gate: GateSettings) -> ABReadout:
    """`readout` with new gateway traffic, its verdict, reasons and warnings judged again."""
    again = readout.model_copy(deep=True)
    for arm in again.arms:
        _set_traffic(arm, traffic.get(arm.arm))
    again.verdict, again.reasons, again.warnings = "none", [], []
    _judge(again, gate)
    return again


def readout_from_rows(rows: list[_Row], *, candidate: tuple[str, str], live: tuple[str, str] | None,
                      asked: float, known: set[str], gate: GateSettings, rollout_id: int | None = None,
                      started_at: datetime | None = None, traffic: dict[str, ArmTraffic] | None = None,
                      balance: ArmBalance | None = None) -> ABReadout:
    """The readout of rollout `rollout_id` from its rows, its gateway `traffic` per arm and its arms' agents'
    `balance`; with `started_at`, rows of windows that opened before it started are left out."""
    cand_path, live_path = candidate[1], live[1] if live else None
    first = first_window_of(started_at) if started_at is not None else None
    arms = {"candidate": _Arm(), "live": _Arm()}
    unknown: set[str] = set()
    for row in rows:
        if first is not None and row.window_id < first:
            continue
        if row.model == cand_path:
            arms["candidate"].rows.append(row)
        elif live_path is not None and row.model == live_path:
            arms["live"].rows.append(row)
        elif row.model and "://" in row.model and row.model not in known:
            unknown.add(row.model)
    by_window: dict[str, dict[str, list[_Row]]] = {}
    for name, arm in arms.items():
        for row in arm.rows:
            by_window.setdefault(row.window_id, {"candidate": [], "live": []})[name].append(row)
    # only windows the candidate served count (earlier ones predate the rollout)
    windows = sorted(w for w, a in by_window.items() if a["candidate"])
    served = [ServedWindow(window_id=w, asked=asked, trajectories=len(a["candidate"]) + len(a["live"]),
                           served=len(a["candidate"]) / (len(a["candidate"]) + len(a["live"])))
              for w in windows for a in [by_window[w]]]
    diffs: list[float] = []
    scores: list[float] = []
    for w in windows:
        cand = [r.pnl for r in by_window[w]["candidate"] if r.pnl is not None]
        base = [r.pnl for r in by_window[w]["live"] if r.pnl is not None]
        score = out_earn_share(cand, base)
        if score is not None:
            diffs.append(statistics.fmean(cand) - statistics.fmean(base))
            scores.append(score)
    stats = [_arm_stats(name, arms[name].rows, windows, ids) for name, ids in
             (("live", live), ("candidate", candidate))]
    for arm in stats:
        _set_traffic(arm, (traffic or {}).get(arm.arm))
    readout = ABReadout(rollout_id=rollout_id, started_at=started_at, first_window=first,
                        candidate_model_id=candidate[0], live_model_id=live[0] if live else None, asked_share=asked,
                        arms=stats, difference=difference_of(diffs, gate, scores),
                        streak_above_zero=streak_above_zero(diffs, gate, scores), window_diffs=diffs,
                        window_scores=scores, served=served,
                        unknown_models=sorted(unknown), balance=balance)
    _judge(readout, gate)
    return readout


def _arm_stats(name: str, rows: list[_Row], windows: list[str], ids: tuple[str, str] | None) -> ArmStats:
    in_windows = [r for r in rows if r.window_id in set(windows)]
    pnls = [r.pnl for r in in_windows if r.pnl is not None]
    return ArmStats(
        arm=name, model_id=ids[0] if ids else None, storage_path=ids[1] if ids else None,  # type: ignore[arg-type]
        agents=len({r.agent_id for r in in_windows}), trajectories=len(in_windows),
        windows=len({r.window_id for r in in_windows}), mean_pnl=_mean(pnls),
        win_rate=(sum(p > 0 for p in pnls) / len(pnls)) if pnls else None,
        judge_score=_mean([r.judge for r in in_windows if r.judge is not None]),
        drawdown=_mean([r.drawdown for r in in_windows if r.drawdown is not None]),
        by_gateway=sum(r.via_gateway for r in in_windows),
    )


def _set_traffic(arm: ArmStats, traffic: ArmTraffic | None) -> None:
    t = traffic or ArmTraffic(requests=0, errors=0, p50_ms=None, p99_ms=None)
    arm.requests, arm.errors, arm.p50_ms, arm.p99_ms = t.requests, t.errors, t.p50_ms, t.p99_ms
    arm.error_rate = t.errors / t.requests if t.requests else None


def _judge(readout: ABReadout, gate: GateSettings) -> None:
    diff, cand = readout.difference, next(a for a in readout.arms if a.arm == "candidate")
    # with no live arm the candidate serves every driven agent: no share was asked of that, nothing to warn about
    for window in readout.served if readout.live_model_id is not None else []:
        if abs(window.served - window.asked) > gate.share_tolerance:
            readout.warnings.append(f"window {window.window_id}: candidate served {window.served:.0%} of "
                                    f"{window.trajectories} trajectories, the rollout asked {window.asked:.0%}")
    if readout.live_model_id is None:
        readout.warnings.append("no live model: the candidate has nothing to be compared with (promote one to 100% "
                                "first)")
    readout.warnings += [w] if (w := balance_warning(readout.balance, readout.rollout_id)) else []
    if readout.unknown_models:
        readout.warnings.append("calls from models the registry does not know: " + ", ".join(readout.unknown_models))
    if cand.error_rate is not None and cand.requests >= gate.min_requests and cand.error_rate > gate.max_error_rate:
        readout.verdict = "rollback"
        readout.reasons.append(f"candidate error rate {cand.error_rate:.1%} ({cand.errors} of {cand.requests} "
                               f"requests through the gateway) passes the limit {gate.max_error_rate:.1%}")
        return
    if cand.drawdown is not None and cand.drawdown > gate.max_drawdown and cand.windows >= 1:
        readout.verdict = "rollback"
        readout.reasons.append(f"candidate drawdown {cand.drawdown:.0%} passes the limit {gate.max_drawdown:.0%}")
        return
    since = f" since rollout {readout.rollout_id} started" if readout.rollout_id is not None else ""
    readout.verdict, reason = paired_verdict(diff, readout.streak_above_zero, gate, since=since)
    readout.reasons.append(reason)


def difference_of(diffs: list[float], gate: GateSettings, scores: list[float] | None = None
                  ) -> PairedDifference | None:
    """The paired difference of `diffs` with the gate's anytime-valid bounds: with per-window `scores`
    (`out_earn_share`), the betting bounds on their mean; without, the Student-t sequence on `diffs`."""
    found = paired_difference(diffs, alpha=gate.alpha, horizon=gate.horizon)
    if found is None or scores is None:
        return found
    low, high = betting_bounds(scores, alpha=gate.alpha)[-1]
    return found.model_copy(update={"cs_low": low, "cs_high": high, "bounds_of": OUT_EARN})


def streak_above_zero(diffs: list[float], gate: GateSettings, scores: list[float] | None = None) -> int:
    """Trailing windows (each with at least `min_windows` before it, itself included) whose anytime-valid
    lower bound over the windows up to them was above zero (on `scores` when given, see `difference_of`)."""
    if scores is not None:
        lows = [low for low, _ in betting_bounds(scores, alpha=gate.alpha)]
    else:
        lows = [cs[0] if (cs := anytime_bounds(diffs[:t], alpha=gate.alpha, horizon=gate.horizon)) else None
                for t in range(1, len(diffs) + 1)]
    streak = 0
    for low in lows[gate.min_windows - 1:]:
        streak = streak + 1 if low is not None and low > 0 else 0
    return streak


def paired_verdict(diff: PairedDifference | None, streak: int, gate: GateSettings, *, since: str = ""
                   ) -> tuple[Verdict, str]:
    """The gate's rule on the paired P&L difference alone (no drawdown or traffic): its verdict and why.
    It reads the anytime-valid bound; the plain CI is named beside it, never acted on."""
    if diff is None or diff.windows < gate.min_windows or diff.ci_low is None or diff.ci_high is None:
        return "collecting", f"{diff.windows if diff else 0} of {gate.min_windows} paired windows{since}"
    plain = diff.plain_ci_text()
    if diff.cs_high is not None and diff.cs_high < 0:
        return "rollback", (f"candidate - live P&L {diff.mean:+.2f}, {diff.cs_text()} is below zero over "
                            f"{diff.windows} windows ({plain})")
    if diff.cs_low is not None and diff.cs_low > 0 and streak >= gate.promote_after:
        if diff.bounds_of is not None and diff.mean < 0:
            # out-earning more often is not enough when the money says otherwise: a candidate that wins small
            # and loses big is never promoted on the share alone (this only ever holds back a promotion)
            return "hold", (f"{diff.cs_text()} is above zero, but candidate - live P&L is {diff.mean:+.2f} on "
                            f"average over {diff.windows} windows ({plain}): not promoted while it is below zero")
        return "promote", (f"{diff.cs_text()} above zero for {streak} consecutive window(s) (gate: "
                           f"{gate.promote_after}; {plain})")
    if diff.cs_low is None or diff.cs_high is None:
        return "hold", f"{diff.cs_text()} after {diff.windows} windows ({plain})"
    if diff.cs_low <= 0:
        return "hold", f"{diff.cs_text()} over {diff.windows} windows includes zero ({plain})"
    return "hold", f"{diff.cs_text()} above zero for {streak} of {gate.promote_after} windows ({plain})"


def verdict_of_differences(diffs: list[float], gate: GateSettings, scores: list[float] | None = None
                           ) -> tuple[Verdict, str]:
    """The gate's P&L verdict on per-window differences (and `scores`, the statistic the A/B gate tests) alone,
    as the readout judges them after the latest window (the benchmark's null experiment applies it to
    simulated rollouts)."""
    return paired_verdict(difference_of(diffs, gate, scores), streak_above_zero(diffs, gate, scores), gate)

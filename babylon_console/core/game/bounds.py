"""Sane bounds for the numbers the game writes (the same rules in SQL and in Python).

A value outside them (or NaN, or infinite) is no agent's hour of play: a finite 1e300 P&L would
even overflow PostgreSQL's float aggregates, whose variance accumulators square it. Such rows are
kept out of every figure and reported with a reason, never raised through.

- P&L: |finalPnL| <= 1e9 dollars (agents start with thousands);
- balance: |finalBalance| <= 1e12;
- rewards: |totalReward| and each step's |reward| <= 1e6;
- episode length: 0 .. 2,000 steps (parsing's MAX_STEPS);
- duration: 0 .. 7 days in ms; start and end in 2000 .. 2100 UTC, end not before start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_ABS_PNL = 1e9
MAX_ABS_BALANCE = 1e12
MAX_ABS_REWARD = 1e6
MAX_EPISODE_LENGTH = 2_000
MAX_DURATION_MS = int(timedelta(days=7).total_seconds() * 1000)
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2100, 1, 1)

# SQL predicates over the game's columns, used by the readiness query (index-only: both columns
# are in the console's readiness index). NaN compares greater than every number in PostgreSQL,
# so BETWEEN excludes it, and +-Infinity, too.
SQL_PNL_OK = f'"finalPnL" BETWEEN {-MAX_ABS_PNL:.0f} AND {MAX_ABS_PNL:.0f}'
SQL_LENGTH_OK = f'"episodeLength" BETWEEN 0 AND {MAX_EPISODE_LENGTH}'

"""The Checkpoints pane's gateways line: the gateways that are up (fresh heartbeat), their request
rate over the last minute and their counts per arm; a stale or stopped gateway is not up."""

from __future__ import annotations

import orjson

from .conftest import SIZE, open_checkpoints_pane, summary_text, wait_for

STATS = {"arms": {"live": {"requests": 120, "errors": 1, "upstream_errors": 1},
                  "candidate": {"requests": 40, "errors": 4, "upstream_errors": 4}}, "log_dropped": 0}


async def _gateway(pool, gateway_id: str, beat_ago_s: float, stats: dict, source: str = "database") -> None:
    await pool.execute(
        "INSERT INTO console_gateways (id, host, pid, listen, heartbeat_at, routing_source, stats) "
        "VALUES ($1, 'h', 1, '127.0.0.1:8787', now() - make_interval(secs => $2), $3, $4::jsonb)",
        gateway_id, beat_ago_s, source, orjson.dumps(stats).decode())


async def test_the_pane_shows_the_gateways_that_are_up_with_rate_and_errors_per_arm(seeded, make_app) -> None:
    await _gateway(seeded, "gw-1", 1, STATS)
    await _gateway(seeded, "gw-2", 2, STATS, source="memory since 2026-11-24 10:00")
    await _gateway(seeded, "gw-old", 3600, STATS)  # its heartbeat is an hour old: not up, not counted
    await seeded.execute(
        "INSERT INTO console_gateway_calls (at, gateway_id, agent, arm, status, latency_ms) "
        "SELECT now() - make_interval(secs => n % 50), 'gw-1', 'a', 'live', 200, 5 FROM generate_series(1, 90) n")
    await seeded.execute(  # older than a minute: not in the rate
        "INSERT INTO console_gateway_calls (at, gateway_id, agent, arm, status, latency_ms) "
        "SELECT now() - interval '5 minutes', 'gw-1', 'a', 'live', 200, 5 FROM generate_series(1, 30)")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints_pane(app, pilot)

        def summary() -> str:
            return summary_text(pane)
        await wait_for(lambda: "gateways:" in summary(), what="the gateways line")
        assert ("gateways: 2 up (1 routing from memory) · 1.5 req/s (last minute) · live 240 requests, 2 errors "
                "(0.8%) · candidate 80 requests, 8 errors (10.0%)") in summary()
        await seeded.execute("UPDATE console_gateways SET stopped_at = now()")
        pane.request_load()
        await wait_for(lambda: "gateways: none up (no fresh heartbeat)" in summary(), what="no gateway up")

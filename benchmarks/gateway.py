"""The model gateway's cost and its switches: what it adds to a call, and how fast it follows the registry.

Three processes on 127.0.0.1: a fake OpenAI-compatible upstream answering after a fixed delay
(`tests.fake_openai.FakeOpenAI`, 20 ms), the real `babylon-console gateway` (its database: a fresh
one on the benchmarks' embedded server, or DATABASE_URL's server), and this client.

1. Added latency at 200 requests/s (open loop: requests sent on a schedule, whatever the answers do):
   direct to the upstream vs through the gateway, p50 and p99 of each and the difference.
2. Throughput at concurrency 64 and 256 (closed loop: each client sends its next request when its
   answer came), direct vs through the gateway, side by side; the gateway's CPU time per request
   (user + system of its process, call log and heartbeat included).
3. Switches under load: 64 agents call the alias through the gateway while the registry switches the
   live model 10 times (promote, rollback, ...). Switch time: from the commit to the first answer
   served by the new checkpoint; failed requests: any answer other than 200 during the whole phase.

Goals: added p50 <= 1 ms and p99 <= 5 ms at 200 requests/s; throughput through the gateway >= 90% of
direct at concurrency 64; switch <= 1 s; 0 failed requests during switches. On a small machine the
client, the upstream and the gateway share the cores: the figures at concurrency 256 measure that too.

Run: .venv/bin/python benchmarks/gateway.py [--seconds 5] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.checkpoints import registry as registry_module
from babylon_console.core.checkpoints.registry import Registry
from benchmarks._common import bench_database

ALIAS = "babylon-agent"
BODY = {"model": ALIAS, "messages": [{"role": "system", "content": "You trade."},
                                     {"role": "user", "content": "MARKET: AAPL 101.5. Your move?"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def _upstream_main(port: int, delay_ms: float) -> None:
    from tests.fake_openai import FakeOpenAI

    fake = FakeOpenAI(default="HOLD", latency=delay_ms / 1000)
    fake.requests, fake.headers = _Sink(), _Sink()  # type: ignore[assignment]  # not kept: a long run
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake._chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    await asyncio.Event().wait()


class _Sink(list):  # type: ignore[type-arg]
    def append(self, _item: Any) -> None:
        return None


async def _wait_http(url: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up within {limit_s:g} s")
            await asyncio.sleep(0.2)


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(self, url: str, agent: str) -> tuple[float, int, str | None]:
        started = time.perf_counter()
        try:
            async with self.session.post(url, json=BODY, headers={"X-Agent-Id": agent}) as resp:
                await resp.read()
                return (time.perf_counter() - started) * 1000, resp.status, resp.headers.get("X-Babylon-Checkpoint")
        except (aiohttp.ClientError, OSError):
            return (time.perf_counter() - started) * 1000, 0, None

    async def closed_loop(self, url: str, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
        """(latencies ms, failures, requests/s) with `concurrency` clients for `seconds`."""
        latencies: list[float] = []
        failures = 0
        stop = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            nonlocal failures
            while time.perf_counter() < stop:
                ms, status, _ = await self.call(url, f"agent-{n}")
                latencies.append(ms)
                failures += status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return latencies, failures, len(latencies) / (time.perf_counter() - started)

    async def open_loop(self, url: str, rate: float, seconds: float) -> tuple[list[float], int]:
        """Requests sent at `rate` per second on a fixed schedule: (latencies ms, failures)."""
        results: list[tuple[float, int, str | None]] = []
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.call(url, f"agent-{i % 500}")))
        results = await asyncio.gather(*tasks)
        return [r[0] for r in results], sum(r[1] != 200 for r in results)


async def _add(pool: asyncpg.Pool, model_id: str) -> None:
    now = datetime(2026, 11, 24)
    await pool.execute(
        """INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt",
           "updatedAt") VALUES ($1, $1, 'v', 'bench-base', $2, $3, $4, $4)""",
        model_id, registry_module.PROMOTABLE[0], f"local-lora:///bench/{model_id}?base=bench-base", now)


async def _switches(client: Client, url: str, registry: Registry, n: int) -> tuple[list[float], int, int]:
    """(switch times s, failed requests, requests) with 64 agents calling through `n` switches."""
    expected: dict[str, Any] = {"model": None, "at": 0.0, "seen": True}
    times: list[float] = []
    failed = total = 0
    done = asyncio.Event()

    async def agent(k: int) -> None:
        nonlocal failed, total
        while not done.is_set():
            _, status, checkpoint = await client.call(url, f"agent-{k}")
            total += 1
            failed += status != 200
            if not expected["seen"] and checkpoint == expected["model"]:
                expected["seen"] = True
                times.append(time.perf_counter() - expected["at"])

    workers = [asyncio.create_task(agent(k)) for k in range(64)]
    await asyncio.sleep(1.0)
    for i in range(n):
        if i % 2 == 0:
            await registry.promote("m2", operator="bench")
            model = "m2"
        else:
            await registry.rollback(operator="bench")
            model = "m1"
        expected.update(model=model, at=time.perf_counter(), seen=False)
        await asyncio.sleep(1.5)
        if not expected["seen"]:
            times.append(float("inf"))
            expected["seen"] = True
    done.set()
    await asyncio.gather(*workers)
    return times, failed, total


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, *args], cwd=root, env=env, stdout=subprocess.DEVNULL)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Length of each measured phase.")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="The upstream's answer delay.")
    parser.add_argument("--rate", type=float, default=200.0, help="Requests per second of the latency phase.")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # run as the fake upstream on this port
    args = parser.parse_args(argv)
    if args.upstream:
        await _upstream_main(args.upstream, args.delay_ms)
        return

    dsn = await bench_database("bench_gateway", fresh=True)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    for model_id in ("m1", "m2"):
        await _add(pool, model_id)
    registry = Registry(pool)
    await registry.promote("m1", operator="bench")

    up_port, gw_port = _free_port(), _free_port()
    direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    through = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    env = {**os.environ, "DATABASE_URL": dsn, "BABYLON_LOCAL_INFERENCE_URL": f"http://127.0.0.1:{up_port}/v1",
           "BABYLON_GATEWAY_KEYS": ""}
    env.pop("BABYLON_GATEWAY_HOST", None)
    upstream = _spawn([__file__, "--upstream", str(up_port), "--delay-ms", str(args.delay_ms)], env)
    gateway = _spawn(["-c", "from babylon_console.cli import main; main()", "gateway", "--port", str(gw_port)], env)
    try:
        await _wait_http(f"http://127.0.0.1:{up_port}/")
        await _wait_http(f"http://127.0.0.1:{gw_port}/healthz")
        gw_process = psutil.Process(gateway.pid)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            client = Client(session)
            await client.closed_loop(direct, 16, 0.5)  # warm both paths: connections, caches
            await client.closed_loop(through, 16, 0.5)

            print(f"upstream answers after {args.delay_ms:g} ms; phases of {args.seconds:g} s\n")
            d_lat, d_fail = await client.open_loop(direct, args.rate, args.seconds)
            g_lat, g_fail = await client.open_loop(through, args.rate, args.seconds)
            print(f"latency at {args.rate:g} requests/s (open loop)")
            for label, lat, fail in (("direct", d_lat, d_fail), ("gateway", g_lat, g_fail)):
                print(f"  {label:<8} p50 {_pct(lat, .5):7.2f} ms   p99 {_pct(lat, .99):7.2f} ms   "
                      f"n={len(lat)} failed={fail}")
            print(f"  added    p50 {_pct(g_lat, .5) - _pct(d_lat, .5):7.2f} ms   "
                  f"p99 {_pct(g_lat, .99) - _pct(d_lat, .99):7.2f} ms   (goal <= 1 / <= 5 ms)\n")

            print("throughput (closed loop)")
            for concurrency in (64, 256):
                d_lat, d_fail, d_rps = await client.closed_loop(direct, concurrency, args.seconds)
                cpu0 = _cpu(gw_process)
                g_lat, g_fail, g_rps = await client.closed_loop(through, concurrency, args.seconds)
                cpu_ms = (_cpu(gw_process) - cpu0) * 1000 / max(1, len(g_lat))
                print(f"  c={concurrency:<4} direct  {d_rps:7.0f} req/s  p50 {_pct(d_lat, .5):6.1f}  "
                      f"p99 {_pct(d_lat, .99):6.1f} ms  failed={d_fail}")
                print(f"  c={concurrency:<4} gateway {g_rps:7.0f} req/s  p50 {_pct(g_lat, .5):6.1f}  "
                      f"p99 {_pct(g_lat, .99):6.1f} ms  failed={g_fail}  = {g_rps / d_rps:.0%} of direct; "
                      f"gateway CPU {cpu_ms:.2f} ms/request")
            print()

            times, failed, total = await _switches(client, through, registry, 10)
            finite = [t for t in times if t != float("inf")]
            print("switches under load (64 agents, 10 promote/rollback switches)")
            print(f"  switch time: median {statistics.median(finite) * 1000 if finite else float('nan'):.0f} ms, "
                  f"max {max(times) * 1000:.0f} ms (goal <= 1000 ms); "
                  f"{len(times) - len(finite)} switches not seen within 1.5 s")
            print(f"  failed requests: {failed} of {total} (goal 0)")
        async with asyncio.timeout(5):
            logged = await pool.fetchval("SELECT count(*) FROM console_gateway_calls")
        print(f"\ncalls in the gateway's log: {logged}")
    finally:
        for process in (gateway, upstream):
            process.terminate()
        for process in (gateway, upstream):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())

"""A gateway on the test database, served with aiohttp's test utilities, and checkpoint rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from babylon_console.core.checkpoints import registry
from babylon_console.core.config import Settings
from babylon_console.core.gateway.server import GatewayServer


async def add_checkpoint(pool: asyncpg.Pool, model_id: str, storage_path: str) -> None:
    """A registered checkpoint, with the status the registry gives new checkpoints (promotable)."""
    now = datetime(2026, 11, 24)
    await pool.execute(
        """INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "avgReward",
           "createdAt", "updatedAt") VALUES ($1, $1, 'v', 'base-model', $2, $3, 0.5, $4, $4)""",
        model_id, registry.PROMOTABLE[0], storage_path, now,
    )


def gateway_settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


StartGateway = Callable[..., Awaitable[tuple[GatewayServer, TestClient]]]


@pytest.fixture
async def start_gateway(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[StartGateway]:
    """start_gateway(**settings) -> (server, client): its follower and call log running, its app
    served by aiohttp's TestServer; all stopped at the end of the test."""
    started: list[tuple[GatewayServer, TestClient]] = []

    async def start(refresh_s: float = 2.0, flush_s: float = 0.05, gateway_pool: asyncpg.Pool | None = None,
                    **values: Any) -> tuple[GatewayServer, TestClient]:
        server = GatewayServer(gateway_settings(**values), gateway_pool or pool, database_url, refresh_s=refresh_s)
        server.calllog.flush_s = flush_s
        await server.follower.start()
        server.calllog.start()
        client = TestClient(TestServer(server.gateway.make_app()))
        await client.start_server()
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        await client.close()
        await server.follower.stop()
        await server.calllog.stop()

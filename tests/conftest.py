"""One embedded PostgreSQL server per test session; a fresh database per test.

Databases are cloned from a migrated template (fast), or from template0 for tests that need an
empty server (migrations on a game-created schema).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from babylon_console.core.db.connections import with_database
from babylon_console.core.db.embedded import start_embedded_server, stop_embedded_server
from babylon_console.core.db.migrations import migrate

# huggingface_hub reads this once, at import: set before anything imports it. Tests never reach the hub.
os.environ["HF_HUB_OFFLINE"] = "1"

TEMPLATE_DB = "bc_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's embedded server (database `postgres`)."""
    pgdata = Path(tmp_path_factory.mktemp("pg", numbered=True)) / "pgdata"
    url = start_embedded_server(pgdata)
    yield url
    stop_embedded_server(pgdata)


@pytest.fixture(scope="session")
async def template_ready(pg_server: str) -> str:
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(pg_server, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


async def _fresh_database(pg_server: str, template: str) -> AsyncIterator[str]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    yield with_database(pg_server, name)
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(pg_server: str, template_ready: str) -> AsyncIterator[str]:
    """A fresh, migrated database."""
    async for url in _fresh_database(pg_server, template_ready):
        yield url


@pytest.fixture
async def empty_database_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh database with nothing in it (not migrated)."""
    async for url in _fresh_database(pg_server, "template0"):
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    try:
        # close() waits for every connection to be released: a test that failed with an engine task still
        # holding one would hang the whole suite here instead of failing alone
        await asyncio.wait_for(pool.close(), 30)
    except TimeoutError:
        pool.terminate()
        pytest.fail("a connection of the test's pool was still held 30 s after the test: terminated")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's .env or keys, and never touch the real data directory."""
    for key in list(os.environ):
        if key in {"DATABASE_URL", "WANDB_API_KEY", "WANDB_ENTITY", "WANDB_DIR", "OPENAI_API_KEY"} or key.startswith(
            "BABYLON_"
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BABYLON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tokenizers come from directories the tests build, never the hub
    monkeypatch.chdir(tmp_path)


# A Llama-3-style template (BOS written by the template itself, <|eot_id|> ends a turn), unlike the
# offline stand-in's ChatML: proves prompts are rendered with the loaded tokenizer's own template.
LLAMA_STYLE_TEMPLATE = (
    "{{ '<|begin_of_text|>' }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE trained here on simulator text, saved as a tokenizer directory."""
    from babylon_console.core.training.standin_tokenizer import build_tokenizer, simulated_corpus

    return build_tokenizer(
        tmp_path_factory.mktemp("tok") / "test-bpe", simulated_corpus(windows=2, agents=6), vocab_size=1500,
        special_tokens=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|pad|>"),
        chat_template=LLAMA_STYLE_TEMPLATE, eos_token="<|eot_id|>", bos_token="<|begin_of_text|>",
        pad_token="<|pad|>",
    )


@pytest.fixture
def resolved_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name this process resolves (W&B's public hosts must never be among them)."""
    import socket

    seen: list[str] = []
    real = socket.getaddrinfo

    def recording(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    return seen

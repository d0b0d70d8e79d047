"""`babylon-console doctor`: configuration and connectivity, with a verdict per check. Never a secret."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .. import __version__
from ..cli_support import load_settings, out, print_json, run_command
from ..core.config import Settings
from ..core.db import migrations
from ..core.db.connections import connect_unmigrated, server_version
from ..core.errors import EXIT_FAILED, DatabaseUnavailable
from ..core.game.schema import missing_game_columns

if TYPE_CHECKING:
    import asyncpg

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked

class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(slots=True)
class Check:
    name: str
    verdict: Verdict
    detail: str


def _static_checks(settings: Settings) -> list[Check]:
    checks = [
        Check(
            "python",
            Verdict.OK if sys.version_info >= (3, 12) else Verdict.FAIL,
            f"{platform.python_version()} ({sys.executable})",
        ),
        Check("babylon-console", Verdict.OK, __version__),
    ]
    if settings.embedded:
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(data_dir, os.W_OK)
        checks.append(Check("data dir", Verdict.OK if writable else Verdict.FAIL, str(data_dir)))
    if settings.judge == "ruler":
        if settings.judge_base_url or settings.openai_api_key:
            where = settings.judge_base_url or "provider default"
            checks.append(Check("judge", Verdict.OK, f"ruler with {settings.judge_model} at {where}"))
        else:
            checks.append(
                Check(
                    "judge",
                    Verdict.FAIL,
                    "ruler needs OPENAI_API_KEY or BABYLON_JUDGE_BASE_URL (or use --judge outcome)",
                )
            )
    else:
        checks.append(Check("judge", Verdict.OK, "outcome (offline, deterministic)"))
    checks.append(_backend_check(settings))
    checks.append(_tokenizer_check(settings))
    checks.append(
        Check(
            "wandb",
            Verdict.OK if settings.wandb_api_key else Verdict.WARN,
            "key set: runs sync online"
            if settings.wandb_api_key
            else "no WANDB_API_KEY: runs are kept offline, sync later with `wandb sync`",
        )
    )
    return checks


def _backend_check(settings: Settings) -> Check:
    from ..core.training.backends.factory import (
        BackendUnavailable,
        check_serverless,
        local_requirements,
        serverless_warnings,
    )

    if settings.backend == "serverless":
        key = settings.wandb_api_key.get_secret_value() if settings.wandb_api_key else None
        try:
            check_serverless(key, settings.serverless_base_url)
        except BackendUnavailable as exc:
            return Check("backend", Verdict.FAIL, f"serverless: {exc}")
        warnings = serverless_warnings(settings.base_model, settings.allow_unlisted_base_model)
        where = settings.serverless_base_url or "W&B's Training API"
        return Check("backend", Verdict.WARN if warnings else Verdict.OK,
                     f"serverless ({where}), base model {settings.base_model}" + "".join(f"; {w}" for w in warnings))
    if settings.backend == "local":
        missing = local_requirements().missing()
        return Check("backend", Verdict.FAIL if missing else Verdict.OK,
                     "local (CUDA): " + ("missing " + "; ".join(missing) if missing else "torch, CUDA and uv found"))
    return Check("backend", Verdict.OK, "offline (CPU stand-in for LLM training)")


def _tokenizer_check(settings: Settings) -> Check:
    """Whether the tokenizer for trainable turns loads (seconds: it imports ART and transformers)."""
    from ..core.training.tokenization import TokenizerUnavailable, load_tokenizer, tokenizer_source

    if settings.backend == "offline" and not settings.tokenizer:
        from ..core.training.standin_tokenizer import DIRECTORY_NAME

        return Check("tokenizer", Verdict.OK, f"offline stand-in ({DIRECTORY_NAME}, built under the data dir on "
                                              "first training)")
    source = tokenizer_source(settings.tokenizer, settings.base_model)
    try:
        tokenizer = load_tokenizer(source)
    except TokenizerUnavailable as exc:
        return Check("tokenizer", Verdict.FAIL, str(exc))
    return Check("tokenizer", Verdict.OK, f"{source}: loads ({len(tokenizer):,} tokens, end of turn "
                                          f"{tokenizer.eos_token!r}, chat template present)")


async def _database_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    try:
        target, conn = await connect_unmigrated(settings)
    except DatabaseUnavailable as exc:
        return [Check("database", Verdict.FAIL, str(exc))]
    try:
        version = await server_version(conn)
        kind = "embedded" if target.embedded else "external"
        checks.append(Check("database", Verdict.OK, f"{kind} PostgreSQL {version} at {target.display}"))
        states = await migrations.status(conn)
        pending = [s for s in states if not s.applied]
        checks.append(
            Check(
                "migrations",
                Verdict.OK if not pending else Verdict.WARN,
                "up to date" if not pending else f"{len(pending)} pending: run `babylon-console db migrate`",
            )
        )
        missing_columns = await missing_game_columns(conn)
        for table, missing in missing_columns.items():
            if missing is None:
                checks.append(Check(f"table {table}", Verdict.WARN, "missing: `db migrate` creates it"))
            elif missing:
                checks.append(Check(f"table {table}", Verdict.FAIL, f"missing columns: {', '.join(missing)}"))
            else:
                checks.append(Check(f"table {table}", Verdict.OK, "columns present"))
        if missing_columns["trained_models"] == []:
            checks.append(await _serving_check(conn))
    finally:
        await conn.close()
    return checks


async def _serving_check(conn: asyncpg.Connection) -> Check:
    """What the Prisma-era game's own query serves, next to the live model; a warning when they differ."""
    from ..core.checkpoints.registry import game_serves, live_model, serving_mismatch

    live, served = await live_model(conn), await game_serves(conn)
    warning = serving_mismatch(live, served)
    if warning:
        return Check("game serves", Verdict.WARN, warning)
    if served is None:
        return Check("game serves", Verdict.OK, "no row (nothing is live: the game uses its base model)")
    return Check("game serves", Verdict.OK, f"{served.model_id}, the live model ({served.storage_path})")


@app.command("doctor")
def doctor_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check configuration and connectivity. Exits 1 if any check fails. Never prints a secret."""
    settings = load_settings()
    checks = _static_checks(settings) + run_command(lambda: _database_checks(settings))
    failed = [c for c in checks if c.verdict is Verdict.FAIL]
    if as_json:
        print_json(
            {"checks": [asdict(c) for c in checks], "settings": settings.public_view(), "ok": not failed}
        )
    else:
        table = Table(
            show_header=True, header_style="bold", title="babylon-console doctor", title_justify="left"
        )
        table.add_column("check")
        table.add_column("")
        table.add_column("detail")
        style = {Verdict.OK: "[green]ok[/]", Verdict.WARN: "[yellow]warn[/]", Verdict.FAIL: "[red]FAIL[/]"}
        for c in checks:
            table.add_row(c.name, style[c.verdict], c.detail)
        out.print(table)
        out.print("All checks passed." if not failed else f"{len(failed)} check(s) failed.")
    if failed:
        raise typer.Exit(EXIT_FAILED)

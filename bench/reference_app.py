"""The floor a control call is compared with: a minimal FastAPI app on the same stack as townhall.

Two routes, nothing else: `GET /constant` returns a constant JSON object, and `GET /items/{key}`
does one indexed query (a primary-key lookup through SQLAlchemy's async engine, on aiosqlite or
asyncpg: the drivers townhall uses) and returns the row as JSON. It is served by uvicorn with the
settings `townhall serve` uses (src/townhall/cli.py: lifespan on, no access log, log level info,
proxy headers off, uvicorn's default HTTP parser (httptools when installed), and `Server.serve()`
under `asyncio.run`, as townhall runs it: so the standard asyncio event loop, not uvloop).
`bench.control_cost` measures its CPU per request beside townhall's, in the same run, on the same
core: what a request costs an async Python stack before any of townhall's own work.

    .venv/bin/python -m bench.reference_app --port 8123 --database-url sqlite+aiosqlite:///ref.db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

ROWS = 1000  # keys key-0 … key-999; the table is made (again) at start


def key(i: int) -> str:
    """The key of row `i`, as the load generator asks for it."""
    return f"key-{i % ROWS}"


def create_app(database_url: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select
    from sqlalchemy.ext.asyncio import create_async_engine

    metadata = MetaData()
    items = Table(
        "items",
        metadata,
        Column("key", String(32), primary_key=True),
        Column("value", Integer, nullable=False),
        Column("label", String(80), nullable=False),
    )
    engine = create_async_engine(database_url)
    query = select(items.c.key, items.c.value, items.c.label).where(items.c.key == bindparam("k"))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA journal_mode = WAL")  # as townhall's records
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                items.insert(),
                [{"key": key(i), "value": i, "label": f"row {i}"} for i in range(ROWS)],
            )
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/constant")
    async def constant() -> dict[str, Any]:
        return {"ok": True, "role": "reference", "open_spaces": 1}

    @app.get("/items/{item_key}")
    async def item(item_key: str) -> Any:
        async with engine.connect() as conn:
            row = (await conn.execute(query, {"k": item_key})).first()
        if row is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such item"}}, 404)
        return {"key": row.key, "value": row.value, "label": row.label}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True, help="sqlite+aiosqlite:/// or asyncpg")
    args = parser.parse_args()
    import uvicorn

    config = uvicorn.Config(
        create_app(args.database_url),
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
        proxy_headers=False,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()

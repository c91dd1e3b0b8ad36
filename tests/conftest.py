"""Fixtures shared by every test: settings, storage and broker on each backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import models

from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker
from devteam.observability.logging import configure_logging
from devteam.settings import Settings
from devteam.storage import Database, Store
from devteam.storage.migrate import upgrade
from tests import prometheus, servers
from tests.fakes.llm import FakeLLM

REPO = Path(__file__).resolve().parent.parent

# Every backend a contract suite runs against; the real servers carry a marker.
STORAGE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
BROKER_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `prometheus` need its binaries: skip without them, or fail in CI."""
    if item.get_closest_marker("prometheus") and (reason := prometheus.binaries_missing()):
        servers.unavailable(reason)


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """Log as the service does, through the standard library, so `caplog` sees it."""
    configure_logging(level="INFO", fmt="console")


@pytest.fixture(autouse=True)
def _no_model_requests() -> Iterator[None]:
    """No test reaches a real LLM; the tests on the fake server allow requests (`fake_llm`)."""
    with models.override_allow_model_requests(False):
        yield


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A fake OpenAI-compatible server on loopback; model requests are allowed meanwhile."""
    async with FakeLLM() as llm:
        with models.override_allow_model_requests(True):
            yield llm


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy instead of migrating again."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await db.close()

    asyncio.run(migrate())
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated Postgres database of this test session, dropped at the end."""
    with servers.temporary_postgres_database() as url:

        async def migrate() -> None:
            db = Database(url)
            await upgrade(db)
            await db.close()

        asyncio.run(migrate())
        yield url


@pytest.fixture
def redis_url() -> str:
    if reason := servers.redis_reachable():
        servers.unavailable(reason)
    return servers.REDIS_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"devteam-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    if servers.redis_reachable() is None:
        servers.delete_redis_prefix(prefix)


@pytest.fixture(params=STORAGE_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database; tests using it run on SQLite and on Postgres."""
    if request.param == "sqlite":
        return servers.copy_sqlite(sqlite_template, tmp_path / "devteam.db")
    url: str = request.getfixturevalue("postgres_url")
    servers.truncate_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite database, for tests that are not about storage."""
    return servers.copy_sqlite(sqlite_template, tmp_path / "devteam.db")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(Database(database_url))
    yield store
    await store.close()


@pytest.fixture(params=BROKER_BACKENDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    """A broker; tests using it run on the in-process one and on Redis."""
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        instance = RedisBroker(url, prefix=prefix)
    yield instance
    await instance.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: its own SQLite file and the repository's config by default."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
            "config_dir": REPO / "config",
            "prompts_dir": REPO / "system_prompts",
            "workspaces_root": tmp_path / "workspaces",
            "redis_url": None,
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_live_server(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """`async with make_live_server(agents=..., **settings) as server`: uvicorn on loopback.

    With `agents` the server also runs executors (the embedded default), so tasks run.
    """
    from contextlib import asynccontextmanager

    from devteam.app import create_app
    from devteam.settings import AppConfig
    from tests.auth import JWT_SECRET, security_config
    from tests.live import LiveServer, serve

    @asynccontextmanager
    async def make(
        config: AppConfig | None = None,
        *,
        agents: Any = None,
        send_buffer: int | None = None,
        **overrides: Any,
    ) -> AsyncIterator[LiveServer]:
        overrides.setdefault("jwt_secret", JWT_SECRET)
        settings = make_settings(**overrides)
        app = create_app(
            settings,
            config or security_config(),
            executors=agents is not None,
            agents=agents,
        )
        async with serve(app, settings, send_buffer=send_buffer) as server:
            yield server

    return make

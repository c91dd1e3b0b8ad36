"""Storage: SQLAlchemy Core tables, Alembic migrations, typed repositories."""

from devteam.storage.database import Database
from devteam.storage.store import Store, UnitOfWork

__all__ = ["Database", "Store", "UnitOfWork"]

"""Durable state: SQLAlchemy models, fenced repositories and Alembic migrations."""

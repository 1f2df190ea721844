"""Errors of the database layer."""
from __future__ import annotations


class DbTimeout(TimeoutError):
    """A database call did not finish within its timeout."""

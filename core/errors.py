"""Errors that more than one layer raises or catches.

`Fenced` is raised both where a write would leave for the venue and where the database refuses
a stale epoch; living here, neither layer has to import the other to speak of it. It stays a
`VenueError` so every handler that catches venue errors broadly keeps catching it.
"""
from __future__ import annotations


class VenueError(Exception):
    """Base of all gateway errors."""


class Fenced(VenueError):
    """The caller's epoch is stale: a replaced actor may not write anything any more."""

"""Local stand-ins for real venues, for contract tests and offline rehearsal."""

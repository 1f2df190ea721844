"""The built-in paper venue: a simulated USDT-perpetual market for rehearsal and tests."""

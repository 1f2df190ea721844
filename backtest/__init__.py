"""Backtests: recorded waves against recorded market data, through the live state machine and paper engine."""

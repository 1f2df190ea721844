"""What a local fake venue serves beyond the real venue's API, for rehearsals on it.

Shared by the fakes (which serve it) and the ccxt gateway (which reads it when its venue is
local), so neither the ccxt package nor the fakes depend on the paper venue for a route name.
"""
from __future__ import annotations

# Where a local fake venue built on the paper engine serves its protection-window record
# (not a route of any real venue).
PROTECTION_GAPS_PATH = "/_fake/protection-gaps"

"""Which closes count as stop-outs for the per-symbol cooldown (service/limits.py): the
close reasons the state machine writes when a stop-loss or trailing stop closed the position,
never an operator's or the service's own close."""
from __future__ import annotations

import pytest

from service.limits import is_stop_out


@pytest.mark.parametrize("reason", [
    "stop-loss triggered", "trailing stop triggered",
    "stop-loss filled while down", "trailing stop filled while down",
])
def test_a_stop_that_closed_the_position_is_a_stop_out(reason):
    assert is_stop_out(reason)


@pytest.mark.parametrize("reason", [
    None, "", "closed", "operator close", "operator close-all",
    "emergency: protection failed after attempt 3", "stop-loss placed",
])
def test_any_other_close_is_not(reason):
    assert not is_stop_out(reason)

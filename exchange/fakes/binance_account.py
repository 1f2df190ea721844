"""Account set-up routes of the fake Binance USD-M venue: position mode, leverage, margin type.

Shapes from Binance's USD-M docs (Account / Trade REST API): "Get Current Position Mode"
`GET /fapi/v1/positionSide/dual` → `{"dualSidePosition": true}`; "Change Initial Leverage"
`POST /fapi/v1/leverage` (symbol, leverage 1-125) → `{"leverage": 21, "maxNotionalValue":
"1000000", "symbol": "BTCUSDT"}`; "Change Margin Type" `POST /fapi/v1/marginType` (symbol,
marginType ISOLATED | CROSSED) → `{"code": 200, "msg": "success"}`, or -4046 "No need to
change margin type." when it already is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class BinanceAccountState:
    dual_side: bool = False  # hedge mode; the service must refuse to start on it
    leverage: dict[str, int] = field(default_factory=dict)  # by Binance symbol id; default 20
    margin_type: dict[str, str] = field(default_factory=dict)  # default CROSSED


def account_routes(state: BinanceAccountState, venue_error: type[Exception],
                   symbol_of: Callable[[dict[str, str]], str]) -> dict[str, Callable[[dict[str, str]], Any]]:
    def leverage(p):
        symbol_of(p)
        try:
            lev = int(p.get("leverage", ""))
        except ValueError:
            raise venue_error(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
        if not 1 <= lev <= 125:
            raise venue_error(-4028, "Leverage is not valid")
        state.leverage[p["symbol"]] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": p["symbol"]}

    def margin_type(p):
        symbol_of(p)
        kind = p.get("marginType", "")
        if kind not in ("ISOLATED", "CROSSED"):
            raise venue_error(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        if state.margin_type.get(p["symbol"], "CROSSED") == kind:
            raise venue_error(-4046, "No need to change margin type.")
        state.margin_type[p["symbol"]] = kind
        return {"code": 200, "msg": "success"}

    return {
        "GET /fapi/v1/positionSide/dual": lambda p: {"dualSidePosition": state.dual_side},
        "POST /fapi/v1/leverage": leverage,
        "POST /fapi/v1/marginType": margin_type,
    }

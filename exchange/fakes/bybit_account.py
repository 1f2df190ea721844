"""Account routes of the fake Bybit: account and API-key info, margin mode, leverage, position mode.

Shapes and codes from Bybit's docs: account/account-info.mdx (`unifiedMarginStatus`,
`marginMode` REGULAR_MARGIN | ISOLATED_MARGIN | PORTFOLIO_MARGIN), account/set-margin-mode.mdx
(`setMarginMode`, answer `{"reasons": []}`), user/apikey-info.mdx (`uta`, `unified`),
position/leverage.mdx (`buyLeverage` = `sellLeverage`; 110043 "Set leverage not modified"),
position/cross-isolate.mdx (classic accounts only; 110026 "Cross/isolated margin mode is not
modified"), position/position-mode.mdx (`mode` 0 one-way | 3 hedge, by `symbol` or `coin`;
110025 "Position mode is not modified").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

_MARGIN_MODES = ("REGULAR_MARGIN", "ISOLATED_MARGIN", "PORTFOLIO_MARGIN")


@dataclass
class BybitAccountState:
    unified: bool = True  # a unified trading account (UTA 2.0)
    margin_mode: str = "REGULAR_MARGIN"  # account-wide on a unified account
    hedge_coins: set[str] = field(default_factory=set)  # settle coins switched to hedge mode
    leverage: dict[str, str] = field(default_factory=dict)  # by unified symbol; default "10"
    trade_mode: dict[str, int] = field(default_factory=dict)  # classic account: 0 cross, 1 isolated

    def hedged(self, coin: str) -> bool:
        return coin in self.hedge_coins


Params = dict[str, Any]
Route = Callable[[Params], Any]


def account_routes(state: BybitAccountState, error: type[Exception],
                   symbol_of: Callable[[Params], str]) -> dict[str, Route]:
    routes = _AccountRoutes(state, error, symbol_of)
    return {
        "GET /v5/account/info": routes.account_info,
        "POST /v5/account/set-margin-mode": routes.set_margin_mode,
        "GET /v5/user/query-api": routes.query_api,
        "POST /v5/position/set-leverage": routes.set_leverage,
        "POST /v5/position/switch-isolated": routes.switch_isolated,
        "POST /v5/position/switch-mode": routes.switch_mode,
    }


@dataclass
class _AccountRoutes:
    """One handler per route, over the account state the fake venue keeps."""
    state: BybitAccountState
    error: type[Exception]
    symbol_of: Callable[[Params], str]

    def account_info(self, p: Params) -> dict[str, Any]:
        state = self.state
        return {"unifiedMarginStatus": 5 if state.unified else 1, "marginMode": state.margin_mode,
                "isMasterTrader": False, "spotHedgingStatus": "OFF", "updatedTime": "1697078946000",
                "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0}

    def set_margin_mode(self, p: Params) -> dict[str, Any]:
        mode = p.get("setMarginMode")
        if mode not in _MARGIN_MODES:
            raise self.error(10001, "params error: setMarginMode invalid")
        self.state.margin_mode = mode
        return {"reasons": []}

    def query_api(self, p: Params) -> dict[str, Any]:
        return {"id": "13770661", "note": "fake", "apiKey": "fake", "readOnly": 0, "secret": "",
                "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [], "Wallet": [],
                                "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [],
                                "Exchange": [], "NFT": [], "Affiliate": []},
                "ips": ["*"], "type": 1, "deadlineDay": 83, "expiredAt": "", "createdAt": "2022-10-16T02:24:40Z",
                "unified": 0, "uta": 1 if self.state.unified else 0, "userID": 24600000, "inviterID": 0,
                "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True}

    def set_leverage(self, p: Params) -> dict[str, Any]:
        state, error = self.state, self.error
        sym = self.symbol_of(p)
        buy, sell = str(p.get("buyLeverage", "")), str(p.get("sellLeverage", ""))
        if not buy or buy != sell:
            raise error(10001, "params error: buyLeverage must equal sellLeverage in one-way mode")
        try:
            lev = float(buy)
        except ValueError:
            raise error(10001, "params error: leverage invalid") from None
        if not 1 <= lev <= 100:
            raise error(10001, "leverage invalid")
        if state.leverage.get(sym, "10") == buy:
            raise error(110043, "Set leverage not modified")
        state.leverage[sym] = buy
        return {}

    def switch_isolated(self, p: Params) -> dict[str, Any]:
        state, error = self.state, self.error
        if state.unified:
            raise error(100028, "The API cannot be accessed by unified account users.")
        sym = self.symbol_of(p)
        mode = int(p.get("tradeMode", -1))
        if mode not in (0, 1):
            raise error(10001, "params error: tradeMode invalid")
        if state.trade_mode.get(sym, 0) == mode:
            raise error(110026, "Cross/isolated margin mode is not modified")
        state.trade_mode[sym] = mode
        state.leverage[sym] = str(p.get("buyLeverage") or state.leverage.get(sym, "10"))
        return {}

    def switch_mode(self, p: Params) -> dict[str, Any]:
        state = self.state
        coin = p.get("coin") or self.symbol_of(p).rsplit(":", 1)[1]
        hedge = {0: False, 3: True}.get(int(p.get("mode", -1)))
        if hedge is None:
            raise self.error(10001, "params error: mode invalid")
        if state.hedged(coin) == hedge:
            raise self.error(110025, "Position mode is not modified")
        (state.hedge_coins.add if hedge else state.hedge_coins.discard)(coin)
        return {}

"""Build a ccxt-backed gateway from configuration; keys come only from environment variables."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import ccxt.pro as ccxtpro

from core.config import Config, ConfigError, is_loopback
from exchange.ccxt.account import account_setup
from exchange.ccxt.adapter import CcxtGateway
from exchange.ccxt.venues import VENUES

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def credentials(env_names: tuple[str, str], api_url: str | None, ws_url: str | None = None) -> tuple[str, str]:
    """Keys from the environment, only ever sent over TLS to a remote host. A local venue
    (loopback api_url) may run without them."""
    key, secret = (os.environ.get(n, "").strip() for n in env_names)
    if key and secret:
        for url, plain in ((api_url, "http://"), (ws_url, "ws://")):
            if url and url.startswith(plain) and not is_loopback(url):
                raise ConfigError(f"{url.split('?')[0][:80]} is plain {plain} to a remote host while "
                                  f"{env_names[0]} is set: signed requests would travel in clear text; use TLS")
        return key, secret
    if api_url and urlsplit(api_url).hostname in _LOOPBACK:
        return "local-key", "local-secret"
    raise ConfigError(f"exchange keys missing: set {env_names[0]} and {env_names[1]} in the environment "
                      f"(they are never read from config files)")


def build_ccxt_gateway(cfg: Config) -> CcxtGateway:
    x = cfg.exchange
    venue = VENUES[x.name]()
    key, secret = credentials(venue.key_env, x.api_url, x.ws_url)
    timeout_s = cfg.deadlines.venue_call_s
    websocket = x.feed != "poll" and (x.api_url is None or x.ws_url is not None)

    def make():
        unit = {} if x.rate_limit_ms is None else {"rateLimit": max(x.rate_limit_ms, 1)}
        ex = getattr(ccxtpro, venue.ccxt_id)({
            "apiKey": key, "secret": secret, "enableRateLimit": x.rate_limit_ms != 0, **unit,
            "rateLimiterAlgorithm": "rollingWindow" if x.rate_window_s > 0 else "leakyBucket",
            "rollingWindowSize": x.rate_window_s * 1000,
            "timeout": int(timeout_s * 1000),
            # an order call that timed out may have been placed: never let ccxt re-send it
            "options": {"maxRetriesOnFailure": 0,
                        # measure the venue clock's offset when markets load, sign with it
                        "adjustForTimeDifference": True},
        })
        venue.configure(ex, api_url=x.api_url, ws_url=x.ws_url, demo=x.demo, sandbox=x.sandbox)
        return ex

    return CcxtGateway(venue, make, call_timeout_s=timeout_s, poll_interval_s=x.poll_interval_ms / 1000,
                       websocket=websocket, trigger_stuck_s=x.trigger_stuck_s,
                       account=account_setup(venue.ccxt_id, x.leverage, x.margin_mode),
                       rehearsal_url=x.api_url if x.api_url and is_loopback(x.api_url) else None)

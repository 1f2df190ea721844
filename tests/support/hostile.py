"""Hypothesis strategies for hostile wave messages: arbitrary JSON, and wave-shaped signals
whose every field is drawn either from good values or from bad ones (missing, wrong type,
non-finite, negative, unknown, too long, control characters, lone surrogates)."""
from __future__ import annotations

import json
import math
from decimal import Decimal

from hypothesis import strategies as st

from exchange.paper.universe import paper_markets
from signals.wave import MAX_SCORE

MARKETS = paper_markets()
SYMBOLS = sorted(MARKETS)
MISSING = object()

json_leaf = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
             | st.sampled_from(["long", "BTC/USDT:USDT", "wave_id", "\ud800", "\x00"]))
json_any = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=25)

good_id = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
bad_id = st.one_of(st.just(MISSING), st.none(), st.just(""), st.just("   "), st.booleans(),
                   st.text(min_size=101, max_size=130).filter(lambda t: len(t.strip()) > 100),
                   st.from_regex(r"[a-z]{1,5}[\x00-\x1f\ud800-\udfff][a-z]{1,5}", fullmatch=True),
                   st.lists(st.integers(), max_size=2), st.floats())
good_symbol = st.sampled_from(SYMBOLS)
bad_symbol = st.one_of(st.just(MISSING), st.none(), st.just(""),
                       st.text(max_size=80).filter(lambda t: t not in MARKETS),
                       st.integers(), st.lists(st.text(max_size=3), max_size=2))
good_side = st.sampled_from(["long", "short", "LONG", " buy ", "Sell"])
bad_side = st.one_of(st.just(MISSING), st.none(), st.integers(), st.lists(st.just("long"), max_size=2),
                     st.text(max_size=40).filter(lambda t: t.strip().lower() not in ("long", "short", "buy", "sell")),
                     st.just("long" + " " * 20 + "x"))
good_score = st.one_of(st.integers(0, 10**9), st.floats(0, 1e9),
                       st.decimals(0, MAX_SCORE, allow_nan=False, allow_infinity=False, places=6))
bad_score = st.one_of(st.just(MISSING), st.none(), st.booleans(), st.integers(max_value=-1),
                      st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                      st.integers(min_value=10**9 + 1), st.just("1e999999999"), st.just("abc"),
                      st.text(min_size=41, max_size=50), st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def signal_fields(draw):
    """A signal dict, whether every field was drawn from the good values, whether its id was."""
    fields, good, id_good = {}, True, True
    for name, ok, bad in (("id", good_id, bad_id), ("symbol", good_symbol, bad_symbol),
                          ("side", good_side, bad_side), ("score", good_score, bad_score)):
        use_good = draw(st.booleans()) or draw(st.booleans())  # mostly good: valid waves happen
        value = draw(ok if use_good else bad)
        good &= use_good
        id_good = id_good if name != "id" else use_good
        if value is not MISSING:
            fields[name] = value
    return fields, good, id_good


def dumps(obj) -> str:
    """JSON text for a generated message (Decimals as numbers' text, NaN as NaN)."""
    return json.dumps(obj, default=lambda d: str(d) if isinstance(d, Decimal) else repr(d))

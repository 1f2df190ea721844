"""Real venues (Binance USD-M, Bybit linear) through ccxt's asyncio clients, behind the Gateway."""

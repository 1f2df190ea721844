"""The one way to a venue: a gateway interface, the paper venue, and (later) ccxt adapters."""

"""Pure domain logic of wave-trader: no threads, no I/O, only values in and values out."""

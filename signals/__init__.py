"""Where waves come from: parsing and validation, and the demo and file sources."""

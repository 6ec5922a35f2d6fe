"""Synthetic audiences: `townhall loadtest` for operators, and the listeners the benches use."""

"""HTTP adapters: the control API, its auth and its error mapping."""

"""Rate limiting, shared by the state layer and the HTTP layer (it imports neither).

bucket.py  the sans-I/O token bucket (time passed in); the embedded store keeps its buckets
           in it, the Redis store runs the same arithmetic in a Lua script
table.py   every limit a stranger can hit, named once, and `take`: one token from the
           shared store (`LiveState.take_token`), or `Limited` (HTTP 429 + Retry-After)
address.py the caller a per-address limit counts: an IPv4 address, an IPv6 /64
storage.py the disk clips and recordings may take per identity and per address: byte budgets in
           the same shared buckets, or `QuotaExceeded` (HTTP 429 `quota_exceeded`)
"""

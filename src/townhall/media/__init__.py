"""The audio path: ingest → mix → encode → package. Cores here are sans-I/O; the asyncio adapters
(`ingest`, `pipeline`) own sockets, timers and threads."""

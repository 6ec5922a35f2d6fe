"""Python clients: a speaker that joins a Space's stage over WebRTC (for bots, tests and benchmarks)."""

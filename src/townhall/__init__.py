"""townhall: live audio rooms. A stage talks over WebRTC; any number of listeners hear it over LL-HLS."""

__version__ = "0.1.0"

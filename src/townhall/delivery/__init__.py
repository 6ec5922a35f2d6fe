"""The listener path: plain, cacheable HTTP GETs for playlists, the init section, parts and segments."""

"""Spaces: what a Space is, its lifecycle, and the service that runs live ones."""

"""The media node: which process runs each open Space's media (placement with leases), the Spaces
this process runs, and how requests reach the owner of a Space from any node."""

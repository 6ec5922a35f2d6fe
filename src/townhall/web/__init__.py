"""Pages and static assets: a stage page for the host and speakers, a listener page."""

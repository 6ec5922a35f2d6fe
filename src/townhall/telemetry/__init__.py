"""What an operator watches: Prometheus metrics (`/metrics`), request accounting and JSON logs."""

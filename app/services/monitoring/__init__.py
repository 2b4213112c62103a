"""What operators watch: Prometheus metrics (shared across workers) and the
admin overview."""

"""Flask blueprints: each URL to its controller, nothing else."""

"""What the service does, behind the HTTP layer, one package per capability:

- `sessions/`: a session's life (create, start, end), its commands and
  history, workspace files, snapshots and scenes, suspend and resume.
- `processes/`: ChimeraX processes: the launchers (this host's sandbox, a
  Slurm job), the agent client that talks to them, the warm pool, finding
  an executable.
- `policy/`: which commands a profile may run, decided on ChimeraX's parse.
- `upkeep/`: what keeps the store true when nobody asks: the sweeper, recovery
  after a restart, transitions whose owner is gone.
- `identity/`: API tokens and the principal they stand for.
- `monitoring/`: Prometheus metrics and the admin overview.
- `errors.py`: every error a service raises, with its HTTP status and code.

Services never import Flask's `request`, and reach the database only
through the store.
"""

"""What the service does, behind the HTTP layer: one package per capability,
each saying what it owns; `errors.py`, every error a service raises with
its HTTP status and code; and `recent.py`, how long a worker trusts what it
read. Services never import Flask's `request`, and reach the database only
through the store.

The packages are listed in docs/design.md (generated: python -m app.layout).
"""

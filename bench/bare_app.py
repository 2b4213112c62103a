"""The baseline for figure 4: a bare Flask route, served by the same gunicorn settings."""
from flask import Flask

app = Flask(__name__)


@app.get("/bare")
def bare():
    return {"id": "00000000-0000-4000-8000-000000000000", "status": "active"}

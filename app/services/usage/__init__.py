"""Who used what: each session's CPU and memory sampled from its launcher
(by the sweeper, and once more before its process stops), a user's usage per
UTC day (`GET /api/usage`), and retention, which deletes old ended sessions
after rolling their usage up. The counting rules themselves are the store's
(`store/accounting.py`)."""

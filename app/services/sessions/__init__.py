"""A session's life and what a user does in it: create and start (on a warm
process or a cold one), end, commands and their history, workspace files,
snapshots and scenes, suspend and resume (`service.SessionService`)."""

"""Keeping the store true when nobody asks: the sweeper's periodic jobs,
recovery after a restart, and transitions whose owner (a worker) is gone."""

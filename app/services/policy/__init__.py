"""Which commands a profile may run: the viewer profile's commands, bounds and
texts, decided by the agent on ChimeraX's own parse (`profiles`)."""

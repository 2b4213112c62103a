"""ChimeraX processes: launchers start and stop them (and alone know where
they run), `chimerax_client` talks to the agent inside each, `pool` keeps
warm ones ready, `locate` finds an executable."""

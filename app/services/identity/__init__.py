"""Who is calling: API tokens and the principal each stands for."""

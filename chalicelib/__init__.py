"""Everything deployed to Lambda beside app.py: one module per concern."""

"""Textual themes and stylesheets (data only, no logic)."""

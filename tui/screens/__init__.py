"""Textual screens: the fleet, one pod, a full-screen log, help."""

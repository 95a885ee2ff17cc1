"""Textual widgets; none does I/O (data arrives as attributes or messages)."""

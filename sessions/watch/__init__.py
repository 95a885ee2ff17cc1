"""Unattended runs: the Watcher turns fleet changes into events, alerts, notifications, auto-download, auto-resume and budget actions."""

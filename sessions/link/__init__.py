"""Reaching one pod: its settings (target, paths), the one PodLink that owns its connection and lends channels, RunPod's PTY-only proxy."""

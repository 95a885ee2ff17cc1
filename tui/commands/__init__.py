"""Headless subcommands: one module per command group, each with `register(subparsers)`.

Modules here import only argparse-level things at import time; the work (and its
imports: asyncssh, rich) happens inside the handlers, so `gpuctl --help` is instant.
"""

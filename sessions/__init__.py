"""The domain: config, pods, snapshots and the Fleet that ties them together."""

# Some sessions modules import asyncssh themselves; importing backends first installs its
# filter for asyncssh's import-time DSA warnings (see backends/__init__.py) before they do.
import backends  # noqa: F401

"""A session's checkpoints: listing on the pod, verified downloads and their index, resume, and the teardown guard."""

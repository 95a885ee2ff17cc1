"""Multi-node jobs: pods as the nodes of one training run (`jobs:` in the config).

`summary.py` reads a job from the Fleet's snapshot (pace = its slowest rank, step skew,
stragglers and hung ranks named); `actions.py` launches every rank in order with the
rendezvous settings filled in, and kills them all.
"""

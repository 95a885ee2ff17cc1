"""The domain: config, pods, snapshots and the Fleet that ties them together."""

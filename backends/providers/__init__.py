"""Cloud-provider backends: list, inspect, stop and terminate rented instances."""

"""The config file: YAML read with line numbers and bounds, validated into frozen data (pods, sessions, policies), and where gpuctl keeps its files."""

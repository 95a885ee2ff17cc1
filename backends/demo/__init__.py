"""`gpuctl demo`: simulated pods on this machine, reached over real SSH on loopback."""

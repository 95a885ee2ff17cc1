"""How gpuctl reaches things: SSH transport, the remote agent, GPU readers, the local machine."""

"""Slurm clusters: a `kind: slurm` pod is a login node, its jobs are what gpuctl follows.

`commands.py` builds every Slurm command gpuctl sends (quoted) and parses the answers
(`squeue --json` where the installed Slurm has it, plain columns otherwise, and
`scontrol show job -o`). `jobs.py` runs them through the login node's transport
(`Fleet.borrow` / `open_transport`, never a connection of its own): list, progress from
each job's StdOut, GPUs read inside the allocation with `srun --overlap`, sbatch,
scancel, resume, cost.
"""

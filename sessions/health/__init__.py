"""GPU health and the pod doctor: pure judgements of what the pod's health reader saw.

`report` turns the reader's JSON (``backends/pod_agent/health.py``) into frozen data, `xid`
says what each Xid number means, `checks` judges each GPU (pass/warn/fail with a plain
reason and a next step), `doctor` runs the reader over a pod's transport, `alerting`
holds the `gpu_health` alert's rule and `stall` says why a run's step stopped. A layer
below `checkpoints`..`watch` (which show and alert on it) and above `tmux` (whose shell
names `stall` looks through), `link`, `progress` and `config`.
"""

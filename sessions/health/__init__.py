"""GPU health and the pod doctor: pure judgements of what the pod's health reader saw.

`report` turns the reader's JSON (``backends/pod_agent/health.py``) into frozen data, `xid`
says what each Xid number means, `checks` judges each GPU (pass/warn/fail with a plain
reason and a next step) and `doctor` runs the reader over a pod's transport. Kept below
`fleet` and `watch` (which show and alert on it) and above `config`.
"""

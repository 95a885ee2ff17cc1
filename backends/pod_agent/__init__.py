"""gpuctl's remote agent: one long-lived process per pod that streams JSON lines.

gpuctl bundles every module of this package into one payload at connect time
(``agent_command.build_agent_command``: the sources travel inside the command line and an
in-memory importer serves them) and runs ``main.main`` with ``python3 -u -c``; nothing is
installed on the pod. Hence the rules: standard library only, any python3 >= 3.8 (no
``X | Y`` at runtime, no ``match``, no 3.9+ APIs), relative imports between the modules
(the package is named ``pod_agent`` on the pod), and importing a module does nothing (the
local backend calls ``sample.collect_sample`` in a thread, the no-python shell fallback
reuses the parsers). A new module here is shipped without a list to edit.

Protocol v1 (stdout, one JSON object per line, flushed):

* ``{"kind": "hello", "v": 1, "python", "hostname", "pid", "gpu_source"}`` once, first;
* ``{"kind": "sample", ...}`` every tick, see ``sample.make_sample`` for the keys; each entry
  of ``tmux`` is ``{"name", "created", "attached", "windows", "state", "exit_status",
  "pid"}`` (see ``tmux.parse_tmux_sessions``);
* ``{"kind": "log", "v": 1, "id", "path", "data", "offset", "skipped", "event"}`` for a
  followed file: ``data`` is text (UTF-8, errors replaced, ``\\r`` and ANSI untouched),
  ``offset`` the byte offset just after it (resume there with ``from_offset``),
  ``skipped`` the bytes dropped to honour ``max_bytes`` (0 normally), ``event`` null or
  "opened" (the first message, or the file appeared), "missing", "truncated", "rotated";
* ``{"kind": "tail", "v": 1, "id", "path", "data", "size", "error"}`` answers ``tail``;
* ``{"kind": "trackers", "v": 1, "id", "roots", "trackers", "current", "search"}`` after
  a tick in which a watched session's tracker files changed: the changed readings (see
  ``tracker_base.make_reading``) and the sources that stand (see
  ``trackers.TrackerWatch.check``);
* ``{"kind": "checkpoints", "v": 1, "id", "listing", "exit_status", "error"}`` when a
  watched session's checkpoint globs changed and settled (and once at the start): the
  whole output of gpuctl's own listing command (see ``checkpoints``), or null with an
  error;
* ``{"kind": "error", "v": 1, "message"}`` (plus ``"id"`` when the command had one)
  when a command on stdin is wrong or failed.

Commands arrive on stdin as JSON lines, dispatched through ``commands.COMMANDS``:
``{"cmd": "interval", "seconds": 2.0}``, ``{"cmd": "sample"}``,
``{"cmd": "follow", "id", "path", "tail_lines"?: 0, "from_offset"?, "max_bytes"?: 262144}``,
``{"cmd": "unfollow", "id"}``, ``{"cmd": "follow_interval", "seconds"}`` (default 0.25,
independent of the telemetry interval), ``{"cmd": "tail", "id", "path", "lines",
"max_bytes"?}``, ``{"cmd": "trackers", "id", "roots": [dir or file, ...], "every_s"?: 2.0}``
(an empty list stops watching) and ``{"cmd": "checkpoints", "id", "root", "patterns",
"command", "every_s"?: 1.0, "quiet_s"?: 2.5, "busy_s"?: 4.0}`` (an empty list stops).
The agent exits when stdin reaches EOF or stdout breaks: the SSH channel is gone and no
orphan may stay behind.

Options (the one JSON argument): ``interval`` (s), ``disk_path``, ``tmux`` (bool),
``gpu_loop`` (bool, default true: one resident ``nvidia-smi -lms`` instead of an exec per
tick), ``gpu_loop_retry_s`` (first wait before loop mode is retried after a failure) and
``tmux_refresh_s`` (the longest an unchanged tmux listing is reused; 0: list every tick),
``health_interval_s`` (GPU health fields from a resident nvidia-smi loop, default 30,
0: never), ``health_slow_interval_s`` (remapped rows and compute apps, two execs, default
1800) and ``kernel_log_interval_s`` (Xid lines, one exec, default 300, 0: never); read in a
thread and sent once as the next sample's ``health`` key (``health.HealthPoller``).

Cost per tick is the point of the design: an exec of nvidia-smi costs NVML's start every
time (tens of ms on a GPU box), so nvidia-smi stays resident in loop mode; tmux is exec'd
only while its server's socket exists, once (``list-panes -a``) for everything, and only
when the server's state may have changed (``tmux.TmuxReader``).
"""

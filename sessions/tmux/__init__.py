"""Sessions on a pod: tmux commands and their parsers, launch/adopt/kill, where logs live, byte-exact log streaming, pane processes."""

"""gpuctl user interfaces: the CLI entry point, headless renderers and (later) the Textual app."""

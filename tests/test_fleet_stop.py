"""Fleet.stop must end every monitor, even one whose cancellation got lost."""

from __future__ import annotations

import asyncio

import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet


async def test_stop_ends_a_monitor_that_swallowed_a_cancellation(tmp_path):
    """What `asyncio.wait_for` does on Python 3.11 when the read it waits on completes
    just as the task is cancelled (CPython gh-86296): the first cancellation is gone."""
    swallowed = []

    async def monitor():
        while True:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    config = parse_config(yaml.safe_dump({"pods": [{"name": "here", "host": "local"}]}), tmp_path / "c.yaml")
    fleet = Fleet(config)
    task = asyncio.create_task(monitor())
    fleet._tasks.append(task)
    await asyncio.wait_for(fleet.stop(patience=0.1), 5)
    assert task.done() and swallowed == [True]

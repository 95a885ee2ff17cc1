"""The teardown guard told how far each session trained (issue 16, item 8): a session
that never saved refuses with its lost steps, one past its verified checkpoint says how
many steps a teardown loses (no refusal: every stop loses those)."""

from __future__ import annotations

from sessions.checkpoints import teardown_guard
from tests.test_teardown_guard import record_copy, setup


async def test_a_session_that_trained_but_never_saved_is_no_longer_called_safe(tmp_path):
    config, pod = setup(tmp_path, "step_100.pt", "step_200.pt")
    copy = await record_copy(tmp_path, pod, "step_200.pt")
    assert (await teardown_guard.check(config, pod))[0] is True  # steps unknown: as before
    ok, note = await teardown_guard.guard_for(config, steps={"train": 260, "eval": 88})(pod)
    assert (ok, note) == (False, "session eval has no checkpoint yet: its 88 steps will be lost")
    ok, note = await teardown_guard.check(config, pod, {"train": 201, "eval": 1})
    assert (ok, note) == (False, "session eval has no checkpoint yet: its 1 step will be lost")
    ok, note = await teardown_guard.check(config, pod, {"train": 260})
    assert ok is True
    assert note == (f"session train: step_200.pt verified at {copy} (the 60 steps since step 200 will be lost); "
                    "no checkpoints in session eval")

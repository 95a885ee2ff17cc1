"""The one-key pod actions, shared by the fleet screen and the pod screen.

A screen says what is targeted (`target()`); `app.actions` does the rest. Actions are
hidden in read-only mode and greyed out when there is nothing to act on, through
`check_action`, so the footer and the command palette show what a key will do.
"""

from __future__ import annotations

from tui.actions import Target
from tui.bindings import POD_ACTIONS

POD_ACTION_NAMES = frozenset(b.action for b in POD_ACTIONS)


class PodActionsMixin:
    """Mix into a Screen that implements `target()`."""

    def target(self) -> Target | None:
        raise NotImplementedError

    def _capabilities(self) -> tuple:
        """What `check_action` depends on: refresh the footer only when it changes."""
        t = self.target()
        actions = self.app.actions  # type: ignore[attr-defined]
        return (t, *(actions.check(name, t) for name in sorted(POD_ACTION_NAMES)))

    def refresh_actions(self) -> None:
        caps = self._capabilities()
        if caps != getattr(self, "_caps", None):
            self._caps = caps
            self.refresh_bindings()  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in POD_ACTION_NAMES:
            return self.app.actions.check(action, self.target())  # type: ignore[attr-defined]
        return True

    def _act(self, name: str) -> None:
        target = self.target()
        if target is not None:
            getattr(self.app.actions, name)(target)  # type: ignore[attr-defined]

    def action_attach(self) -> None:
        self._act("attach")

    def action_launch(self) -> None:
        self._act("launch")

    def action_kill(self) -> None:
        self._act("kill")

    def action_download(self) -> None:
        self._act("download")

    def action_resume(self) -> None:
        self._act("resume")

    def action_stop(self) -> None:
        self._act("stop")

    def action_teardown(self) -> None:
        self._act("teardown")

    def action_automation(self) -> None:
        self._act("automation")

    def action_log(self) -> None:
        from tui.screens.log_screen import LogScreen

        target = self.target()
        if target is not None and target.session is not None:
            self.app.push_screen(LogScreen(target.pod, target.session))  # type: ignore[attr-defined]

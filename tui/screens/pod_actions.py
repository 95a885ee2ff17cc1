"""The one-key pod actions, shared by the fleet screen and the pod screen.

A screen says what is targeted (`target()`); `app.actions` does the rest. Actions are
hidden in read-only mode and greyed out when there is nothing to act on, through
`check_action`, so the footer and the command palette show what a key will do.
"""

from __future__ import annotations

from tui.actions import Target
from tui.bindings import MUTATING, POD_ACTIONS

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

    def on_key(self, event) -> None:
        """A key whose action is hidden (read-only) or greyed out (nothing to act on)
        still says why it did nothing: Textual skips such a binding silently, and a user
        who pressed `k` or `n` would otherwise not know whether it was ignored, broken
        or still coming."""
        actions = self.app.actions  # type: ignore[attr-defined]
        # The chain, not self._bindings: it has config `keys:` applied and leaves out keys
        # a focused Input takes (typing `k` into the filter is not a refused kill).
        chain = dict(self._binding_chain)  # type: ignore[attr-defined]
        mine = chain.get(self)
        for binding in mine.key_to_bindings.get(event.key, ()) if mine is not None else ():
            if binding.action not in POD_ACTION_NAMES:
                continue
            if actions.read_only and binding.action in MUTATING:
                from tui.palette import key_label

                event.stop()
                actions.refused_key(key_label(self.app, binding), binding.action)  # type: ignore[attr-defined]
                return
            target = self.target()
            if actions.check(binding.action, target) is None:
                event.stop()
                actions.greyed_key(binding.action, target)
                return

    def paused_pods(self) -> frozenset[str]:
        """Pods whose policies `w` (or a headless watch holding the state) paused, among
        the screen's snapshot. None in read-only mode: there every pod's are off and the
        header says READ-ONLY instead."""
        bridge = self.app.automation  # type: ignore[attr-defined]
        if bridge is None or bridge.watcher is None or self.app.actions.read_only:  # type: ignore[attr-defined]
            return frozenset()
        pods = self.snapshot.pods  # type: ignore[attr-defined]
        return frozenset(p.name for p in pods if not bridge.actions_enabled(p.name))

    def automation_changed(self) -> None:
        """`w` paused or resumed a pod's policies: mark it now, not at the next snapshot."""
        self._draw()  # type: ignore[attr-defined]

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

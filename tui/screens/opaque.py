"""A full screen that ignores the repaints Textual forwards from the screen under it.

Textual 8.2 treats the screen directly under the top one as a "background screen" even
when the top one is opaque, and forwards that screen's dirty regions to the top screen
as `refresh(*regions)`. It also re-arms the forwarding on itself (`_repaint_required`),
so once the screen underneath was dirty (at the moment it was covered, always), every
idle turn of it repaints those regions of the top screen: measured on the full-screen
log over the pod screen, a whole-screen repaint 3-5 times a second, ~40 KB/s at
160x48 for nothing (issue 16). Nothing under an opaque screen can show, so such a
refresh is dropped. Textual calls `Screen.refresh` with regions for nothing else; a
plain `refresh()` and every widget's own refresh work as usual.
"""

from __future__ import annotations

from textual.geometry import Region
from textual.screen import Screen


class OpaqueScreen(Screen):
    def refresh(self, *regions: Region, **kwargs) -> OpaqueScreen:
        if regions and not kwargs and self.styles.background.a == 1 and self.is_active:
            return self
        return super().refresh(*regions, **kwargs)

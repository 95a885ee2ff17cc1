"""One rule for "billing now" (QA of issue 12, item 4): a stopped or torn-down pod's
price showed as `$/H 7.56` in the TUI row and the `status` table while the header's
`$/h` left it out. `PodSnapshot.billing_now` decides; rows, sort and totals read it."""

from __future__ import annotations

import pytest

from sessions.snapshot import FleetSnapshot, PodSnapshot
from tui.fleet_rows import pod_cells
from tui.status_table import _pod_cells, summary


def pod(name: str, state: str, provider_state: str | None = None) -> PodSnapshot:
    return PodSnapshot(name=name, host="h", state=state, price_per_hour=7.56, provider_state=provider_state)


@pytest.mark.parametrize(("state", "provider_state", "billing"), [
    ("online", None, True),
    ("online", "running", True),
    ("reconnecting", "running", True),   # the provider says it runs: billed while SSH is down
    ("reconnecting", None, False),       # nobody says it runs: as spend counts it (not)
    ("stopped", "stopped", False),
    ("stopped", None, False),            # gpuctl's own stop, before the provider's poll
    ("terminated", "terminated", False),
    ("preempted", "stopped", False),
    ("online", "stopped", False),        # the provider's word wins about billing
])
def test_every_view_shows_a_price_only_while_it_is_billed(state, provider_state, billing):
    p = pod("a100x4", state, provider_state)
    assert p.billing_now is billing
    shown = "7.56" if billing else "-"
    assert pod_cells(p)["price"][0][0] == shown  # the TUI row
    assert _pod_cells(p)[3] == shown            # the status table
    assert ("$7.56/h" in summary(FleetSnapshot((p,)))) is billing  # the header / status total


def test_the_total_is_the_sum_of_the_prices_shown():
    pods = (pod("a", "online"), pod("b", "stopped", "stopped"), pod("c", "reconnecting", "running"))
    shown = [float(c) for c in (pod_cells(p)["price"][0][0] for p in pods) if c != "-"]
    assert f"${sum(shown):.2f}/h" in summary(FleetSnapshot(pods)) and len(shown) == 2

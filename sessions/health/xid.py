"""What an Xid number means to someone paying for the GPU, and what to do next.

From NVIDIA's Xid catalogue (https://docs.nvidia.com/deploy/xid-errors/, "Xid Errors"
and the A100/H100 memory error management guide,
https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/). Only the Xids a training run
meets are worded here; any other is a warning that names its number. Xids that are
usually the program's own fault (13, 31, 43) warn rather than fail, as the GPU itself
may be fine.
"""

from __future__ import annotations

from dataclasses import dataclass

PASS, WARN, FAIL = "pass", "warn", "fail"

REPLACE = "checkpoint now and replace this pod"


@dataclass(frozen=True)
class XidMeaning:
    status: str
    what: str
    next_step: str


XIDS: dict[int, XidMeaning] = {
    13: XidMeaning(WARN, "graphics engine exception, usually the program (an out-of-range access)",
                   "check the program; if other programs hit it too, replace this pod"),
    31: XidMeaning(WARN, "GPU memory page fault, usually the program (an illegal address)",
                   "check the program; if other programs hit it too, replace this pod"),
    43: XidMeaning(WARN, "the GPU stopped a program that hit an error", "look at the program's own error"),
    45: XidMeaning(WARN, "preemptive cleanup after an earlier error or a killed process",
                   "look for the error before it"),
    48: XidMeaning(FAIL, "an uncorrectable (double-bit) memory error: results may be wrong", REPLACE),
    61: XidMeaning(FAIL, "the GPU's microcontroller halted", "the GPU needs a reset: " + REPLACE),
    62: XidMeaning(FAIL, "the GPU's microcontroller halted", "the GPU needs a reset: " + REPLACE),
    63: XidMeaning(WARN, "a bad memory row was recorded for remapping",
                   "it takes effect at the next GPU reset; ask the provider to reset the GPU"),
    64: XidMeaning(FAIL, "recording a bad memory row failed: memory errors can no longer be repaired", REPLACE),
    74: XidMeaning(FAIL, "an NVLink error: traffic between GPUs fails or slows",
                   "ask the provider for another host"),
    79: XidMeaning(FAIL, "the GPU fell off the bus", REPLACE),
    92: XidMeaning(WARN, "a high rate of corrected memory errors", "watch it; replace the pod if it repeats"),
    94: XidMeaning(WARN, "an uncorrectable memory error was contained (the program using it was stopped)",
                   "restart the run from its checkpoint; the GPU needs a reset soon"),
    95: XidMeaning(FAIL, "an uncorrectable memory error could not be contained", REPLACE),
    119: XidMeaning(FAIL, "the GPU's firmware (GSP) stopped answering", REPLACE),
    120: XidMeaning(FAIL, "the GPU's firmware (GSP) reported an error", REPLACE),
    140: XidMeaning(FAIL, "an unrecovered memory error", REPLACE),
}


def meaning(xid: int) -> XidMeaning:
    """The meaning of an Xid; an unknown number is a warning that names it."""
    return XIDS.get(xid) or XidMeaning(WARN, "a driver error (see NVIDIA's Xid catalogue)",
                                       "look it up at https://docs.nvidia.com/deploy/xid-errors/")


def normalise_bus_id(bus: str) -> str:
    """One spelling of a PCI address: nvidia-smi's ``00000000:3B:00.0`` and the kernel
    log's ``0000:3b:00`` are both ``0000:3b:00``."""
    parts = bus.strip().lower().split(":")
    if len(parts) < 3:
        return bus.strip().lower()
    domain, bus_number, device = parts[-3], parts[-2], parts[-1].split(".")[0]
    return "%s:%s:%s" % (domain[-4:].rjust(4, "0"), bus_number, device)

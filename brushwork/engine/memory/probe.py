"""How much memory this process holds and may still take, on the CPU and on CUDA.

Memory is the process's resident set on the CPU (Linux: its high-water mark, which
:class:`PeakMeter` resets before it measures) and the caching allocator's peak on CUDA.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import torch

from brushwork.engine.memory.allocator import trim_heap

BUDGET_SHARE = 0.8  # of the memory available when the run starts, by default


class PeakMeter:
    """The peak memory of a stretch of work on ``device``, or None where it cannot be read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base = 0

    @property
    def works(self) -> bool:
        if self.device.type == "cuda":
            return True
        return self.device.type == "cpu" and _can_reset_rss_peak()

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            trim_heap()
            _reset_rss_peak()
            self._base = _proc_status("VmRSS")

    def peak(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return float(torch.cuda.max_memory_allocated(self.device) - self._base)
        return float(_proc_status("VmHWM") - self._base)


def resident_bytes(device: torch.device) -> float:
    """What the process holds now on ``device``."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device))
    try:
        return float(_proc_status("VmRSS"))
    except OSError:  # no /proc: the peak so far is the nearest figure
        import resource
        return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def maxrss_bytes(ru_maxrss: int, system: str = sys.platform) -> float:
    """``getrusage``'s ``ru_maxrss`` in bytes: macOS reports bytes, Linux KiB."""
    return float(ru_maxrss if system == "darwin" else ru_maxrss * 1024)


def available_bytes(device: torch.device) -> float:
    """Memory this process could still take on ``device``: the GPU's free memory, or the
    system's available memory within any cgroup limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            candidates.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
        except (ValueError, OSError, AttributeError):
            candidates.append(8 * 1024 ** 3)
    return float(max(0, min(candidates)))


def default_budget(device: torch.device) -> float:
    """A safe share of what is available, plus what the process already holds."""
    return resident_bytes(device) + BUDGET_SHARE * available_bytes(device)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock or a peak reads it whole."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{key} is not in /proc/self/status")


def _can_reset_rss_peak() -> bool:
    return os.access("/proc/self/clear_refs", os.W_OK) and Path("/proc/self/status").exists()


def _reset_rss_peak() -> None:
    """Set the high-water mark VmHWM to the current resident set (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

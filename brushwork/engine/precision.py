"""The arithmetic the network runs in: float32, or bfloat16 where the hardware has it.

Only the network's convolutions, ReLUs and poolings run in the low precision. The
picture being optimised, the optimiser's state, the features handed to the losses, Gram
matrices and their targets and every loss sum stay float32 (brushwork.engine.network
casts at both ends), so bfloat16's 8-bit mantissa touches each activation once and never
accumulates into a sum.

``auto`` picks bfloat16 only where it is native: a CPU with AMX or AVX512-BF16 (oneDNN's
bfloat16 kernels), a CUDA GPU that supports it. Elsewhere PyTorch emulates bfloat16 and
it is slower than float32, so ``auto`` keeps float32 there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from brushwork.errors import BrushworkError

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# torch.cpu.get_capabilities() keys that mean the CPU multiplies bfloat16 natively.
NATIVE_BF16_CPU = ("amx_bf16", "avx512_bf16")


def name_of(dtype: torch.dtype) -> str:
    """The precision's name for a network's ``dtype`` (``fp32`` for anything not low)."""
    return next((name for name, d in DTYPES.items() if d == dtype), "fp32")


@dataclass(frozen=True)
class Precision:
    """The precision a run uses (``fp32`` or ``bf16``) and why it was chosen."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def describe(self) -> str:
        return f"precision {self.name}: {self.reason}"


def cpu_capabilities() -> Mapping[str, object]:
    """What PyTorch's CPU detection found (empty where this PyTorch cannot tell)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    return get() if get is not None else {}


Capabilities = Callable[[], Mapping[str, object]]


def native_bf16(device: torch.device, capabilities: Capabilities | None = None
                ) -> tuple[bool, str]:
    """Whether ``device`` does bfloat16 arithmetic natively, and the evidence
    (``capabilities``: the CPU's, :func:`cpu_capabilities` unless given)."""
    if device.type == "cpu":
        caps = (capabilities or cpu_capabilities)()
        found = [name for name in NATIVE_BF16_CPU if caps.get(name)]
        cpu = caps.get("cpu_name") or "this CPU"
        if found:
            return True, f"{cpu} has {' and '.join(found)}"
        return False, f"{cpu} has neither {' nor '.join(NATIVE_BF16_CPU)}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bfloat16"
        return False, f"{name} does not support bfloat16 natively"
    return False, f"bfloat16 is not used on {device.type}"


def resolve_precision(name: str, device: torch.device,
                      capabilities: Capabilities | None = None) -> Precision:
    """``auto`` -> bf16 where native, else fp32; a named precision as asked (bf16 on
    hardware without it is allowed, and said to be slow)."""
    if name not in PRECISIONS:
        raise BrushworkError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    if name == "fp32":
        return Precision("fp32", "asked for")
    native, why = native_bf16(device, capabilities)
    if name == "bf16":
        if device.type == "mps":
            raise BrushworkError("precision bf16 is not supported on mps; use fp32 or auto")
        return Precision("bf16", "asked for" if native else
                         f"asked for, though {why}: expect it to be slower than fp32")
    if native:
        return Precision("bf16", f"auto, since {why}")
    return Precision("fp32", f"auto, since {why}")

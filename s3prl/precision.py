"""Which reduced precisions this machine runs natively.

bf16 on a CPU pays only where oneDNN has bf16 instructions to use (AVX512-BF16, AMX-BF16 on
Xeon Sapphire Rapids and later); elsewhere torch emulates it, slower than float32. Training
(`runner.amp`) and extraction (`Upstream.dtype`) ask here before they autocast.
"""
from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls on this CPU's own bf16 units (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False

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


DTYPES = ("float32", "bfloat16")


def resolve_dtype(requested: str, device: str, option: str = "--dtype") -> str:
    """The compute dtype an extraction really runs in for `requested` on `device` ("cpu" |
    "cuda"): "float32" as asked; "bfloat16" on CUDA or on a CPU with bf16 units, else "float32"
    with one warning (bf16 emulated without those units is slower than float32). Anything else is
    a UserError naming `option`."""
    from s3prl.errors import UserError

    if requested not in DTYPES:
        raise UserError(f"{option} {requested}: not one of {', '.join(DTYPES)}")
    if requested == "bfloat16" and str(device) == "cpu" and not cpu_supports_bf16():
        import logging

        logging.getLogger("s3prl.precision").warning(
            "%s bfloat16: this CPU has no bf16 matrix units (AVX512-BF16 / AMX); running in float32", option)
        return "float32"
    return requested


def main(argv: list[str] | None = None) -> int:
    """`python -m s3prl.precision --dtype D --device DEV`: prints the dtype a run really uses
    (utils/dump_feats.sh resolves it once, so a fallback is noticed once, not once per job)."""
    import argparse

    from s3prl.log import setup_logging
    from s3prl.train.distributed import DEVICES, resolve_device

    p = argparse.ArgumentParser(prog="python -m s3prl.precision",
                                description="Print the compute dtype this machine runs for a requested one.")
    p.add_argument("--dtype", required=True, help=" | ".join(DTYPES))
    p.add_argument("--device", default="cpu", choices=DEVICES)
    args = p.parse_args(argv)
    setup_logging(0)
    print(resolve_dtype(args.dtype, resolve_device(args.device)))
    return 0


if __name__ == "__main__":
    from s3prl.errors import cli_main

    cli_main(main)

"""Checkpoint files: their names in an experiment directory and the one safe way to read them,
shared by the trainer (which writes them) and the upstream loaders (which find and read them).

S3PRL's runner writes ``states-<step>.ckpt`` (github.com/s3prl/s3prl v0.4.18,
s3prl/pretrain/runner.py and s3prl/downstream/runner.py); ``best-dev.ckpt`` is our dev-selected
model (S3PRL writes ``dev-best.ckpt``). `load_checkpoint` reads any of them with torch's
weights_only unpickler (`torch.load(weights_only=True)`): nothing in a file is imported or run.
This module imports no model code, so both `s3prl.upstream` and `s3prl.train` depend on it.
"""
from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from s3prl.errors import UserError

__all__ = ["CKPT_RE", "BEST_NAME", "checkpoint_name", "find_checkpoints", "prune_checkpoints", "load_checkpoint",
           "refuse_unloaded"]

CKPT_RE = re.compile(r"^states-(\d+)\.ckpt$")
BEST_NAME = "best-dev.ckpt"


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at `step` (S3PRL's `states-<step>.ckpt`)."""
    return f"states-{int(step)}.ckpt"


def find_checkpoints(exp_dir: str | Path) -> list[tuple[int, Path]]:
    """`states-<step>.ckpt` files in `exp_dir`, sorted by step (oldest first)."""
    d = Path(exp_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(exp_dir: str | Path, max_keep: int, keep_steps=()) -> list[Path]:
    """Delete all but the newest `max_keep` checkpoints (max_keep <= 0 keeps all); those of
    `keep_steps` are neither counted nor deleted. Returns the removed."""
    if max_keep <= 0:
        return []
    keep = {int(s) for s in keep_steps}
    removed = []
    for _, p in [c for c in find_checkpoints(exp_dir) if c[0] not in keep][:-max_keep]:
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------ reading
class _Unloaded:
    """Inert stand-in for a class or function a checkpoint names outside the sections we read
    (e.g. the `optimizers.WarmupLinearSchedule` object s3prl 0.4.x pickles into its optimizer
    state). Building one runs nothing and imports nothing: arguments and state are dropped."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Unloaded":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self.global_name}>"


def _unsafe_globals(path: Path) -> list[str]:
    """The pickle GLOBALs of `path` that weights_only does not admit, read statically (nothing is
    imported or run): torch's own scanner on the zip layout, the same scanner over the four
    pickles of the legacy (torch < 1.6) layout."""
    from torch import _weights_only_unpickler as wou

    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(f))
        f.seek(0)
        found: set[str] = set()
        for _ in range(4):  # magic number, protocol, sys info, the object
            found |= wou.get_globals_in_pkl(f)
    safe = set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    return sorted(found - safe)


def _stand_ins(names: list[str]) -> list[tuple[type, str]]:
    return [(type("Unloaded_" + re.sub(r"\W", "_", n), (_Unloaded,), {"global_name": n}), n) for n in names]


def _find_unloaded(obj: Any, where: str) -> tuple[str, str] | None:
    """(location, global name) of the first stand-in inside `obj`, else None."""
    if isinstance(obj, _Unloaded) or (isinstance(obj, type) and issubclass(obj, _Unloaded)):
        return where, obj.global_name
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, argparse.Namespace):
        items = vars(obj).items()
    else:
        return None
    for k, v in items:
        hit = _find_unloaded(v, f"{where}.{k}")
        if hit:
            return hit
    return None


def refuse_unloaded(ckpt: dict, path: str | Path, skip: tuple[str, ...] = ()) -> None:
    """UserError if a stand-in (`load_checkpoint(..., lenient=True)`) sits in any top-level
    section of `ckpt` but those in `skip` (sections the caller never reads)."""
    for key, value in ckpt.items():
        if key in skip:
            continue
        hit = _find_unloaded(value, str(key))
        if hit:
            raise UserError(f"{path}: refused: '{hit[0]}' holds a pickled {hit[1]}, not a tensor or plain "
                            "value (checkpoints are read without running code)")


def load_checkpoint(path: str | Path, lenient: bool = False) -> dict:
    """torch.load(weights_only=True, map_location='cpu'); refusals and corrupt files are UserErrors.

    lenient=False: a file naming any class or function weights_only does not admit is refused.
    lenient=True: such globals become inert `_Unloaded` stand-ins (registered for exactly the
    names found by a static scan, never imported, never called), so a file whose optimizer state
    pickles a scheduler object still loads; the caller must then `refuse_unloaded` every
    section it reads. The unpickler stays torch's weights_only one in both cases.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    allowed: list = [argparse.Namespace]
    try:
        try:
            with torch.serialization.safe_globals(allowed):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not lenient or not _refused_global(e):
                raise
            try:
                names = _unsafe_globals(path)
            except Exception:  # noqa: BLE001 - a file the scanner cannot parse is corrupt
                raise e from None
            if not names:
                raise
            with torch.serialization.safe_globals(allowed + _stand_ins(names)):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = lines[0] if lines else type(e).__name__
        why = next((ln for ln in lines if "Unsupported" in ln or "GLOBAL" in ln), None)
        if _refused_global(e):
            raise UserError(f"{path}: refused: checkpoint needs arbitrary unpickling ({(why or first)[:200]})") from None
        raise UserError(f"{path}: cannot read checkpoint (truncated or corrupt: {first[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read checkpoint (truncated or corrupt: {first[:200]})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: not an S3PRL checkpoint (top level is a {type(ckpt).__name__}, not a dict)")
    return ckpt


def _refused_global(e: Exception) -> bool:
    text = str(e)
    return "Unsupported" in text or "GLOBAL" in text or "weights only" in text.lower() or "weights_only" in text \
        or "unrecognized function" in text or "Can only" in text

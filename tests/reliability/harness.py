"""Fault-injection harness for the reliability suite (kill -9, resource limits, output digests).

- `cli(args, ...)`: run ``python -m s3prl.bin.<verb>`` or a shell verb in a subprocess (own process
  group, single-threaded torch, repository on PYTHONPATH) and return the CompletedProcess.
- `run_and_kill(cmd, when)`: start a command and SIGKILL its whole process group as soon as
  `when()` is true (a file appeared, a delay passed), or when it exits; returns whether it was
  killed. Kill points are deterministic where the stage exposes progress on disk (a temporary
  file, a checkpoint), else a delay drawn from a seeded RNG.
- `tree_digest(dir)`: {relative path: sha256} of a tree (ark/scp/text files), ignoring logs and
  lock files, for comparing an interrupted + rerun stage with an uninterrupted one.
- `ark_contents(scp)`: {utt: matrix} read through the scp (ark byte offsets may differ legitimately).
- `checkpoint_tensors(path)`: the tensors of a checkpoint, flattened to {dotted key: tensor}.
- `tmp_leftovers(dir)`: temporary files (``.NAME.tmp.PID`` and ``*.tmp.*``) left anywhere under dir.
- `limits(fsize=..)`: a preexec_fn setting RLIMIT_FSIZE (disk full) in the child.
"""
from __future__ import annotations

import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

# Files whose content legitimately differs between runs (timestamps, pids, host names).
VOLATILE = (".lock", ".log", "tb", "plots", "log", "RESULTS.md")


def env(**extra: str) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e.setdefault("MKL_NUM_THREADS", "1")
    e["PATH"] = f"{REPO / 'utils'}:{Path(PY).parent}:{e.get('PATH', '')}"
    e["LC_ALL"] = "C"
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def verb(name: str, *args) -> list[str]:
    return [PY, "-m", f"s3prl.bin.{name}", *map(str, args)]


def cli(cmd: Sequence[str], *, cwd=None, timeout: float = 300, preexec=None, **extra_env) -> subprocess.CompletedProcess:
    """Run `cmd`; stdout/stderr captured as text."""
    return subprocess.run(list(map(str, cmd)), cwd=cwd, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec, start_new_session=preexec is None)


def limits(fsize: int | None = None, as_bytes: int | None = None) -> Callable[[], None]:
    """A preexec_fn for subprocess: new session, RLIMIT_FSIZE (bytes) and/or RLIMIT_AS."""
    def _set() -> None:
        os.setsid()
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if as_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    return _set


def file_appears(pattern_dir: Path, glob: str, count: int = 1) -> Callable[[], bool]:
    """A kill condition: at least `count` files matching `glob` exist under `pattern_dir`."""
    def cond() -> bool:
        return len(list(Path(pattern_dir).glob(glob))) >= count
    return cond


def after(seconds: float, then: Callable[[], bool] | None = None) -> Callable[[], bool]:
    """A kill condition: `seconds` after `then()` first holds (after the first poll by default)."""
    state: dict = {"t0": None}

    def cond() -> bool:
        if state["t0"] is None:
            if then is not None and not then():
                return False
            state["t0"] = time.monotonic()
        return time.monotonic() - state["t0"] >= seconds
    return cond


def random_delays(seed: int, n: int, lo: float, hi: float) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(lo, hi) for _ in range(n))


def run_and_kill(cmd: Sequence[str], when: Callable[[], bool], *, cwd=None, timeout: float = 300,
                 poll: float = 0.005, **extra_env) -> tuple[bool, str]:
    """Run `cmd`; SIGKILL its process group once `when()` holds. Returns (killed, stderr text)."""
    p = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env(**extra_env), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    killed = False
    try:
        while p.poll() is None:
            if when():
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
                break
            if time.monotonic() - t0 > timeout:
                os.killpg(p.pid, signal.SIGKILL)
                raise TimeoutError(f"{cmd} ran over {timeout}s")
            time.sleep(poll)
    finally:
        _, err = p.communicate()
    # Children of killed shell verbs die with the group; make sure none linger.
    with_suppress_killpg(p.pid)
    return killed, err or ""


def with_suppress_killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tree_digest(root: Path, ignore: Sequence[str] = VOLATILE) -> dict[str, str]:
    """{relative path: sha256} of the regular files under root, skipping `ignore` names/dirs."""
    out = {}
    root = Path(root)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in ignore or part.endswith(".log") for part in rel.parts):
            continue
        if p.is_file():
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ark_contents(scp: Path) -> dict:
    import kaldiio
    import numpy as np

    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(scp)).items()}


def checkpoint_tensors(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    flat = {}

    def walk(x, prefix):
        if isinstance(x, torch.Tensor):
            flat[prefix] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{prefix}.{i}")
    walk(ckpt, "")
    return flat


def tmp_leftovers(root: Path) -> list[Path]:
    """Temporary files/dirs left anywhere under root by an atomic writer or a shell verb."""
    root = Path(root)
    return [p for p in root.rglob("*") if ".tmp." in p.name or p.name.endswith(".tmp")
            or p.name.endswith(".unsorted")]


def peak_rss_cmd(cmd: Sequence[str], **extra_env) -> tuple[int, subprocess.CompletedProcess]:
    """Run `cmd` in a fresh child via a tiny wrapper and return (peak RSS in KiB of the child, result)."""
    wrapper = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
               "print('MAXRSS',resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);"
               "sys.exit(r.returncode)")
    res = cli([PY, "-c", wrapper, *cmd], **extra_env)
    rss = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("MAXRSS")]
    return (rss[-1] if rss else -1), res

"""Fixtures of the upstream tests.

- every test runs single-threaded: the models are tiny, and on a busy 2-core machine intra-op
  threads (GRU especially) oversubscribe the CPUs and slow the tests down many times;
- `s3prl_oracle` (session): the python of tools/bench-venv, a separate venv holding s3prl 0.4.18 from
  PyPI as a test-only reference. It is installed with tools/install_bench_reference.sh when absent
  (a clean clone); the tests using it are skipped, with the installer's last line as the reason,
  only when that install fails.
"""
import subprocess

import pytest
import torch

from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def s3prl_oracle():
    from s3prl.bench.extraction import DEFAULT_REF_VENV, reference_python

    py = reference_python(DEFAULT_REF_VENV)
    if py is None:
        proc = subprocess.run(["bash", str(REPO_ROOT / "tools" / "install_bench_reference.sh")],
                              capture_output=True, text=True)
        py = reference_python(DEFAULT_REF_VENV)
        if proc.returncode or py is None:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            pytest.skip(f"s3prl 0.4.18 oracle could not be installed (tools/install_bench_reference.sh "
                        f"exit {proc.returncode}: {last[:200]})")
    return py

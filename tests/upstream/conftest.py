"""Run the upstream tests single-threaded: the models are tiny, and on a busy 2-core machine
intra-op threads (GRU especially) oversubscribe the CPUs and slow the tests down many times."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

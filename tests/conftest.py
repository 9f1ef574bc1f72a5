import os

import pytest
import torch

# Two cores: one intra-op thread per test process keeps timings predictable.
torch.set_num_threads(int(os.environ.get("WS_TEST_THREADS", "1")))


@pytest.fixture
def gen() -> torch.Generator:
    """An explicit, seeded generator for every test that samples."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param

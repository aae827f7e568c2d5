"""Property tests draw the same examples on every run (`derandomize`), so `make test` gives a
teacher or a CI machine the same verdict each time. To let hypothesis search for new failing
examples instead: HYPOTHESIS_PROFILE=explore make test."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def one_thread():
    """Tiny models and checkers: one thread is faster than several, above all on a busy machine.
    A test file uses it for all its tests with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

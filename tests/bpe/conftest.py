"""Fixtures of the BPE tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread while a test trains in its own process, as a proxy task does: more would
    fight over the test machine's cores, and the test would take many times as long."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

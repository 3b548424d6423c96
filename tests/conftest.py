import os
import sys
from pathlib import Path

# test helpers (launching, tensorboard_events, ...) import as plain modules
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    """A tiny random-weight Qwen2.5-VL (text width 64, seed 3), built once per test module."""
    from mmr1.fixtures.models import build_tiny_vlm

    return str(build_tiny_vlm(tmp_path_factory.mktemp("vl") / "m", text_hidden=64, seed=3))


@pytest.fixture
def fresh_plugins():
    """The test starts from, and leaves behind, a fresh process-wide plugin manager
    (``pytestmark = pytest.mark.usefixtures("fresh_plugins")`` in a module that loads plugins)."""
    from mmr1.plugins import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()

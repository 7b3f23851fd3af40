from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "attention_mesh_golden.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def golden_batch(golden) -> torch.Tensor:
    """The golden face crops as the model's NCHW float input."""
    return torch.from_numpy(golden["crops"].astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def attention_mesh():
    import modelzoo
    return modelzoo.load_model("attention_mesh", pretrained=True)


@pytest.fixture(scope="session")
def full_build(tmp_path_factory):
    """One cold build of the real model through every format (the slow end-to-end fixture)."""
    from converters.build import build
    out = tmp_path_factory.mktemp("full_build")
    result = build("attention_mesh", out)
    return out / "attention_mesh", result

"""The registry and the output contract, parametrised over every registered model."""
from __future__ import annotations

import pytest
import torch

import modelzoo
from modelzoo.errors import InputContractError, RegistryError, UnknownModelError
from modelzoo.registry import register_model

MODELS = modelzoo.list_models()


def test_list_models_has_the_zoo():
    assert {"attention_mesh", "attention_mesh_paper", "face_mesh_cascade"} <= set(MODELS)


def test_duplicate_registration_raises():
    with pytest.raises(RegistryError, match="already registered"):
        register_model("attention_mesh", spec=modelzoo.entry("attention_mesh").spec)(lambda: None)


def test_unknown_id_lists_known_ids():
    with pytest.raises(UnknownModelError) as info:
        modelzoo.get_spec("no_such_model")
    for mid in MODELS:
        assert mid in str(info.value)
    with pytest.raises(UnknownModelError):
        modelzoo.load_model("no_such_model")


@pytest.fixture(scope="module", params=MODELS)
def random_model(request):
    return request.param, modelzoo.get_spec(request.param), modelzoo.load_model(request.param, pretrained=False)


def _example(spec, n=2, seed=0):
    shape = [n if d is None else d for d in spec.inputs[0].shape]
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_spec_is_consistent(random_model):
    mid, spec, _ = random_model
    assert spec.id == mid
    assert len(spec.sha256()) == 64 and spec.sha256() == modelzoo.get_spec(mid).sha256()
    for fmt, prec in spec.targets:
        for out in spec.landmark_outputs:
            spec.tolerance(fmt, prec, out)  # every enabled target has a tolerance


def test_outputs_match_spec(random_model):
    mid, spec, model = random_model
    with torch.no_grad():
        out = model(_example(spec))
    assert set(out) == {o.name for o in spec.outputs}
    for o in spec.outputs:
        t = out[o.name]
        assert o.matches_shape(tuple(t.shape)), (o.name, tuple(t.shape))
        assert t.shape[0] == 2
        assert str(t.dtype) == f"torch.{o.dtype}"
        assert torch.isfinite(t).all(), o.name
        if o.value_range:
            assert t.min() >= o.value_range[0] and t.max() <= o.value_range[1]


def test_model_is_deterministic_and_seeded(random_model):
    mid, spec, model = random_model
    again = modelzoo.load_model(mid, pretrained=False)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("bad, match", [
    (lambda s: torch.rand(1, 3, 100, 100), "shape"),
    (lambda s: torch.rand(1, *s[2:], 3), "NHWC"),
    (lambda s: torch.rand(*s, dtype=torch.float64), "dtype"),
    (lambda s: torch.randint(0, 255, s, dtype=torch.uint8), "dtype"),
    (lambda s: torch.rand(*s).index_fill_(3, torch.tensor([5]), float("nan")), "NaN"),
    (lambda s: torch.rand(*s).index_fill_(2, torch.tensor([7]), float("inf")), "NaN or Inf"),
    (lambda s: torch.rand(0, *s[1:]), "empty"),
    (lambda s: torch.rand(*s).numpy(), "torch.Tensor"),
])
def test_bad_input_raises_typed_error(random_model, bad, match):
    _, spec, model = random_model
    shape = [1 if d is None else d for d in spec.inputs[0].shape]
    with pytest.raises(InputContractError, match=match) as info:
        model(bad(shape))
    assert spec.inputs[0].name in str(info.value) or "image" in str(info.value)


def test_memory_layout_is_handled(random_model):
    _, spec, model = random_model
    x = _example(spec, n=2, seed=3)
    with torch.no_grad():
        ref = model(x)
        cl = model(x.to(memory_format=torch.channels_last))
        nc = model(x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))  # a non-contiguous view
    assert not x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).is_contiguous()
    for k in ref:
        torch.testing.assert_close(cl[k], ref[k], rtol=0, atol=1e-4)
        torch.testing.assert_close(nc[k], ref[k], rtol=0, atol=1e-4)


def test_batch_items_are_independent(random_model):
    _, spec, model = random_model
    x = _example(spec, n=3, seed=5)
    with torch.no_grad():
        full = model(x)
        single = model(x[1:2])
    for k in full:
        torch.testing.assert_close(full[k][1:2], single[k], rtol=0, atol=1e-4)

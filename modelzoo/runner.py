"""The PyTorch reference runner: the zoo model itself (imported weights when it has them), under
the runtime's runner contract. Registered when `modelzoo` is imported."""
from __future__ import annotations

from typing import Any

from runtime.runners import Runner, register_runner


@register_runner
class TorchRunner(Runner):
    name = "pytorch"
    format = "pytorch"

    def __init__(self, spec, artifact=None, *, model: Any = None, **kw):
        super().__init__(spec, None, **kw)
        self.model = model

    def _load_impl(self) -> None:
        import torch

        from .registry import has_pretrained, load_model
        if self.model is None:
            self.model = load_model(self.spec.id, pretrained=has_pretrained(self.spec.id))
        if self.threads:
            torch.set_num_threads(self.threads)

    def _infer_impl(self, feed):
        import torch
        (name,) = feed
        with torch.no_grad():
            out = self.model(torch.from_numpy(feed[name]))
        return {k: v.numpy() for k, v in out.items()}

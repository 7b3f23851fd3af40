"""Named input sets for validation: seeded random tensors, real faces, and perturbations of the
real faces (brightness, rotation, partial occlusion). Every array is NCHW float32 in [0,1]."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelzoo.data import SAMPLE_FACES
from modelzoo.spec import ModelSpec


@dataclass(frozen=True)
class InputCase:
    name: str
    kind: str            # "seeded" | "face" | "perturbed"
    array: np.ndarray    # (1,C,H,W) float32

    @property
    def is_face(self) -> bool:
        return self.kind != "seeded"


def _face(path, size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return (np.asarray(im, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image
    img = Image.fromarray((x[0].transpose(1, 2, 0) * 255).round().astype(np.uint8))
    img = img.rotate(degrees, resample=Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def input_sets(spec: ModelSpec, seeds: int = 2) -> list[InputCase]:
    inp = spec.inputs[0]
    shape = tuple(1 if d is None else d for d in inp.shape)
    cases = [InputCase(f"seeded-{s}", "seeded", np.random.default_rng(s).random(shape, dtype=np.float32))
             for s in range(seeds)]
    if not (inp.layout == "NCHW" and inp.channel_order == "RGB"):
        return cases
    size = int(shape[-1])
    for i, path in enumerate(SAMPLE_FACES, start=1):
        face = _face(path, size)
        cases.append(InputCase(f"face-{i}", "face", face))
        cases.append(InputCase(f"face-{i}-bright", "perturbed", np.clip(face * 1.3 + 0.05, 0, 1).astype(np.float32)))
        cases.append(InputCase(f"face-{i}-rot15", "perturbed", _rotate(face, 15.0)))
        occluded = face.copy()
        occluded[:, :, size // 4: size // 2, size // 5: size // 2] = 0.5   # a grey patch over one eye
        cases.append(InputCase(f"face-{i}-occluded", "perturbed", occluded))
    return cases

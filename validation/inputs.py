"""Named input sets for validation: seeded random tensors, real faces, perturbations of the
real faces (brightness, rotation, partial occlusion), and, for landmark models, the face crops
the photo pipeline makes of real photos (PyTorch detector → ROI → warp), so that a release is
judged on the inputs `validate --photos` gives it. Every array is NCHW float32 in [0,1]."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from modelzoo.data import SAMPLE_FACES, SAMPLE_PHOTO
from modelzoo.spec import ModelSpec


@dataclass(frozen=True)
class InputCase:
    name: str
    kind: str            # "seeded" | "face" | "perturbed" | "photo-crop"
    array: np.ndarray    # (1,C,H,W) float32

    @property
    def is_face(self) -> bool:
        return self.kind != "seeded"


def _face(path, size: int, width: int | None = None) -> np.ndarray:
    """The face photo resized to size × `width` (default: square), NCHW in [0, 1]."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB").resize((width or size, size), Image.BILINEAR)
        return (np.asarray(im, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image
    img = Image.fromarray((x[0].transpose(1, 2, 0) * 255).round().astype(np.uint8))
    img = img.rotate(degrees, resample=Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


# The photos cropped by the pipeline: the sample photo, the same photo mirrored (another crop
# rotation), and the astronaut face crop taken as a photo (the detector's ROI then reaches past
# its border, which the warp replicates).
PHOTOS = (("photo", SAMPLE_PHOTO, False), ("photo-mirrored", SAMPLE_PHOTO, True), ("photo-face-2", SAMPLE_FACES[1], False))


@lru_cache(maxsize=8)
def _photo_crops(size: int, detector: str) -> tuple[tuple[str, np.ndarray], ...]:
    from modelzoo.photo import FacePipeline, detection_roi, load_image
    from modelzoo.photo.networks import RunnerNetwork, pytorch_runner
    out = []
    with pytorch_runner(detector) as runner:
        pipeline = FacePipeline(RunnerNetwork(runner), None, detector_size=int(runner.spec.inputs[0].shape[-1]),
                                landmark_size=size)
        for name, path, mirrored in PHOTOS:
            image = load_image(path)
            if mirrored:
                image = np.ascontiguousarray(image[:, ::-1])
            for i, d in enumerate(pipeline.detect(image)):
                out.append((name if i == 0 else f"{name}-{i + 1}", pipeline.crop(image, detection_roi(d.box, d.keypoints))))
    return tuple(out)


def photo_crops(size: int, detector: str = "face_detector") -> list[InputCase]:
    """The landmark model's inputs the photo pipeline makes of PHOTOS: every face the PyTorch
    `detector` finds, its ROI warped to size×size (computed once per process)."""
    return [InputCase(f"{name}-crop", "photo-crop", a.copy()) for name, a in _photo_crops(size, detector)]


def input_sets(spec: ModelSpec, seeds: int = 2) -> list[InputCase]:
    """Seeded tensors over the input's value range; a user model's own samples (modelzoo.user);
    for RGB NCHW image models, faces and their perturbations (and photo crops for landmark models)."""
    from modelzoo.user import samples_of

    inp = spec.inputs[0]
    shape = tuple(1 if d is None else d for d in inp.shape)
    lo, hi = inp.value_range or (0.0, 1.0)
    cases = [InputCase(f"seeded-{s}", "seeded",
                       (lo + (hi - lo) * np.random.default_rng(s).random(shape, dtype=np.float32)).astype(np.float32))
             for s in range(seeds)]
    cases += [InputCase(f"sample-{name}", "sample", a) for name, a in samples_of(spec)]
    if not (inp.layout == "NCHW" and inp.channel_order == "RGB"):
        return cases
    size, height = int(shape[-1]), int(shape[-2])     # a user's image input need not be square
    for i, path in enumerate(SAMPLE_FACES, start=1):
        face = _face(path, height, size)
        cases.append(InputCase(f"face-{i}", "face", face))
        cases.append(InputCase(f"face-{i}-bright", "perturbed", np.clip(face * 1.3 + 0.05, 0, 1).astype(np.float32)))
        cases.append(InputCase(f"face-{i}-rot15", "perturbed", _rotate(face, 15.0)))
        occluded = face.copy()
        occluded[:, :, height // 4: height // 2, size // 5: size // 2] = 0.5   # a grey patch over one eye
        cases.append(InputCase(f"face-{i}-occluded", "perturbed", occluded))
    if spec.landmarks is not None and shape[-2] == shape[-1]:
        cases += photo_crops(size)
    return cases

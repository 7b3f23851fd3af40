"""Run a zoo model on a face-crop image: landmarks as data and an overlay picture."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

import modelzoo
from modelzoo.data import SAMPLE_FACE
from modelzoo.errors import InputContractError

SAMPLE_CROP = SAMPLE_FACE

_COLORS = {"mesh": (200, 200, 200), "lips": (255, 60, 60), "left_eye": (60, 220, 60),
           "right_eye": (60, 220, 60), "left_iris": (60, 140, 255), "right_iris": (60, 140, 255)}


@dataclass
class CropPrediction:
    model: str
    image_size: tuple[int, int]
    landmarks: np.ndarray          # (478,3) in image pixels (z scaled like x)
    face_flag: float
    regions: dict[str, np.ndarray]  # region name -> (K,2) image pixels

    def to_json(self) -> dict:
        return {"model": self.model, "image_size": list(self.image_size), "face_flag": self.face_flag,
                "landmarks": self.landmarks.round(4).tolist(),
                "regions": {k: v.round(4).tolist() for k, v in self.regions.items()}}


def load_image(path: Path | str) -> Image.Image:
    """An RGB image, EXIF orientation applied; grayscale and RGBA are converted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputContractError(f"cannot read image {path}: {exc}") from None


def predict_crop(model_id: str, image: Image.Image, model: torch.nn.Module | None = None,
                 cache_dir: Path | None = None) -> CropPrediction:
    """Treat the whole image as the face crop: resize to the model input, run, scale back."""
    spec = modelzoo.get_spec(model_id)
    inp = spec.inputs[0]
    if inp.layout != "NCHW" or inp.channel_order != "RGB":
        raise InputContractError(f"{model_id} does not take an RGB image crop ({inp.describe()})")
    size = inp.shape[-1]
    if model is None:
        model = modelzoo.load_model(model_id, pretrained=True, cache_dir=cache_dir)
    w, h = image.size
    arr = np.asarray(image.resize((size, size), Image.BILINEAR) if (w, h) != (size, size) else image)
    x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        out = model(x)
    sx, sy = w / size, h / size
    lm = out["landmarks"][0].numpy().astype(np.float64)
    lm = lm * np.array([sx, sy, sx])
    regions = {k: out[k][0].numpy().astype(np.float64) * np.array([sx, sy])
               for k in ("lips", "left_eye", "right_eye", "left_iris", "right_iris") if k in out}
    return CropPrediction(model_id, (w, h), lm, float(out["face_flag"][0, 0]), regions)


def draw_overlay(image: Image.Image, pred: CropPrediction, min_side: int = 576) -> Image.Image:
    """Landmarks drawn over the image (upscaled so small crops stay readable)."""
    scale = max(1.0, min_side / min(image.size))
    im = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    r = max(1.0, scale * 0.6)

    def dots(points: np.ndarray, color: tuple[int, int, int]) -> None:
        for x, y in points[:, :2] * scale:
            d.ellipse([x - r, y - r, x + r, y + r], fill=color)

    dots(pred.landmarks[:468], _COLORS["mesh"])
    for name, pts in pred.regions.items():
        dots(pts, _COLORS[name])
    return im

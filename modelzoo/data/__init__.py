"""Small data shipped with the zoo: a real face crop (a public-domain portrait, 192×192 RGB) used
as the example input of landmark models, e.g. by the converters' quick parity gates."""
from pathlib import Path

import numpy as np

SAMPLE_FACE = Path(__file__).parent / "sample_face.png"


def sample_face(size: int) -> np.ndarray:
    """The sample face as float32 NCHW (1,3,size,size) in [0,1]."""
    from PIL import Image
    with Image.open(SAMPLE_FACE) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])

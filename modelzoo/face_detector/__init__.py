"""`face_detector`: MediaPipe's BlazeFace short-range detector, with imported weights."""
from ..registry import register_model
from .anchors import SHORT_RANGE, AnchorConfig, anchor_centres
from .model import BlazeFace
from .postprocess import Detection, detect, weighted_nms
from .spec import spec
from .weights import load_pretrained


@register_model("face_detector", spec=spec, load_weights=load_pretrained)
def build() -> BlazeFace:
    return BlazeFace(spec().input("image"))


__all__ = ["AnchorConfig", "BlazeFace", "Detection", "SHORT_RANGE", "anchor_centres", "build", "detect",
           "weighted_nms"]

"""`attention_mesh`: MediaPipe's shipped Attention Mesh topology, with imported weights."""
from ..registry import register_model
from .model import AttentionMesh, AttentionMeshConfig, RegionConfig
from .spec import CONFIG, spec
from .weights import load_pretrained


@register_model("attention_mesh", spec=spec, load_weights=load_pretrained)
def build() -> AttentionMesh:
    return AttentionMesh(CONFIG, spec().input("image"))


__all__ = ["AttentionMesh", "AttentionMeshConfig", "RegionConfig", "build"]

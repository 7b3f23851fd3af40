"""`face_mesh_cascade`: the Attention Mesh paper's cascade baseline (mesh model, then eye & iris
and lips models on image crops), with MediaPipe's mesh and iris weights imported."""
from ..registry import register_model
from .model import CascadeConfig, FaceMeshCascade, FaceMeshNet, IrisNet, LipsNet
from .spec import CONFIG, SEED, spec
from .weights import load_pretrained


@register_model("face_mesh_cascade", spec=spec, load_weights=load_pretrained, seed=SEED)
def build() -> FaceMeshCascade:
    return FaceMeshCascade(CONFIG, spec().input("image"))


__all__ = ["CascadeConfig", "FaceMeshCascade", "FaceMeshNet", "IrisNet", "LipsNet", "build"]

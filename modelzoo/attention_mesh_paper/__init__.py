"""`attention_mesh_paper`: the paper's configuration of the Attention Mesh (256 input,
64×64 features, 24×24 crops, iris split at 6×6), seeded random init. Same implementation as
`attention_mesh`, another config."""
from dataclasses import replace

from ..attention_mesh.model import AttentionMesh
from ..attention_mesh.spec import CONFIG as SHIPPED, LANDMARK_OUTPUTS, LANDMARKS, LOCALISATION_POINTS, image_input, \
    landmark_outputs
from ..registry import register_model
from ..spec import DEFAULT_TARGETS, ModelSpec, Tolerance, landmark_tolerances

CONFIG = replace(SHIPPED, input_size=256, crop_size=24)


# Random init: its outputs are not faces (landmarks within ~1 px of the origin, inter-ocular
# distance ~0.04 px), so IOD-relative bounds mean nothing; reduced precision is bounded in pixels.
# Measured: fp16-rounded weights move landmarks by ≤ 1.6e-3 px.
_NOT_A_FACE = "random init: outputs are not faces, IOD-relative bounds do not apply; absolute px bound"
TOLERANCES = {**landmark_tolerances(),
              ("tflite", "fp16", "*"): Tolerance(atol=0.01, max_px=0.01, reason=_NOT_A_FACE),
              ("coreml", "fp16", "*"): Tolerance(atol=0.05, max_px=0.05, reason=_NOT_A_FACE + " (fp16 compute)"),
              ("tflite", "int8", "*"): Tolerance(atol=0.25, max_px=0.25, reason=_NOT_A_FACE + " (int8 weights)")}


def spec() -> ModelSpec:
    return ModelSpec(
        id="attention_mesh_paper",
        description="Attention Mesh in the paper's configuration (256 input, 64×64 features, 24×24 crops, "
                    "iris split at 6×6); seeded random init, no pretrained weights",
        inputs=(image_input(CONFIG.input_size),),
        outputs=landmark_outputs(CONFIG.input_size),
        preprocessing="RGB face crop resized to 256×256, float32 in [0,1], NCHW",
        tolerances=TOLERANCES,
        targets=DEFAULT_TARGETS,
        landmark_outputs=LANDMARK_OUTPUTS,
        min_onnx_opset=16,
        config={"input_size": CONFIG.input_size, "feature_size": CONFIG.feature_size,
                "crop_size": CONFIG.crop_size, "iris_split": CONFIG.crop_size // 4,
                "onnx_required_ops": ("GridSample",), "coreml_required_ops": ("resample",)},
        landmarks=LANDMARKS,
        localisation_points=LOCALISATION_POINTS,
    )


@register_model("attention_mesh_paper", spec=spec, seed=2020)
def build() -> AttentionMesh:
    return AttentionMesh(CONFIG, spec().input("image"))

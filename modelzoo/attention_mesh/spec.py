"""Spec of `attention_mesh` and the shared output contract of attention-mesh models."""
from __future__ import annotations

from ..spec import DEFAULT_TARGETS, LandmarkSpec, ModelSpec, TensorSpec, WeightsSpec, landmark_tolerances
from .model import AttentionMeshConfig
from .regions import LEFT_EYE, LIPS, MEDIAPIPE_REGIONS, RIGHT_EYE

CONFIG = AttentionMeshConfig(regions=MEDIAPIPE_REGIONS)

LANDMARK_OUTPUTS = ("landmarks", "lips", "left_eye", "right_eye", "left_iris", "right_iris")

# The 478-point contract's regions for the paper's metrics (all, lips, eyes, iris: irises are
# appended as 468–477) and its inter-ocular distance: the outer eye corners 33 and 263 (DESIGN §5).
LANDMARKS = LandmarkSpec(
    output="landmarks", points=478,
    regions={"all": tuple(range(478)), "lips": LIPS, "eyes": tuple(sorted(set(LEFT_EYE) | set(RIGHT_EYE))),
             "iris": tuple(range(468, 478))},
    iod_pair=(33, 263))
# Blocks and crop samplers: the localiser names the first block whose output a conversion breaks.
LOCALISATION_POINTS = ("BlazeBlock", "CropSampler")


def image_input(size: int) -> TensorSpec:
    return TensorSpec("image", (None, 3, size, size), "float32", layout="NCHW",
                      meaning="face crop", units="intensity", value_range=(0.0, 1.0), channel_order="RGB")


def landmark_outputs(size: int) -> tuple[TensorSpec, ...]:
    px = f"input pixels (0..{size}); z in the same scale as MediaPipe"
    return (
        TensorSpec("landmarks", (None, 478, 3), meaning="468 mesh points refined by lips/eyes + 10 iris points", units=px),
        TensorSpec("face_flag", (None, 1), meaning="face presence probability (sigmoid applied)", units="probability",
                   value_range=(0.0, 1.0)),
        TensorSpec("lips", (None, 80, 2), meaning="lips region landmarks", units="input pixels"),
        TensorSpec("left_eye", (None, 71, 2), meaning="left eye and brow region landmarks", units="input pixels"),
        TensorSpec("right_eye", (None, 71, 2), meaning="right eye and brow region landmarks", units="input pixels"),
        TensorSpec("left_iris", (None, 5, 2), meaning="left iris centre + 4 contour points", units="input pixels"),
        TensorSpec("right_iris", (None, 5, 2), meaning="right iris centre + 4 contour points", units="input pixels"),
    )


MEDIAPIPE_WHEEL = "mediapipe==0.10.21 (PyPI wheel)"
MEDIAPIPE_ATTRIBUTION = ("Weights from Google MediaPipe (https://github.com/google-ai-edge/mediapipe), "
                         "Copyright Google LLC, licensed under the Apache License 2.0.")


def spec() -> ModelSpec:
    cfg = CONFIG
    return ModelSpec(
        id="attention_mesh",
        description="MediaPipe-compatible Attention Mesh (192 input, 48×48×32 features, 16×16 crops, "
                    "iris split at 4×4) with MediaPipe's face_landmark_with_attention weights",
        inputs=(image_input(cfg.input_size),),
        outputs=landmark_outputs(cfg.input_size),
        preprocessing="RGB face crop resized to 192×192, float32 in [0,1], NCHW",
        tolerances=landmark_tolerances(),
        targets=DEFAULT_TARGETS,
        weights=WeightsSpec(source=MEDIAPIPE_WHEEL,
                            members=("mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",),
                            license="Apache-2.0", attribution=MEDIAPIPE_ATTRIBUTION),
        landmark_outputs=LANDMARK_OUTPUTS,
        min_onnx_opset=16,
        config={"input_size": cfg.input_size, "feature_size": cfg.feature_size, "crop_size": cfg.crop_size,
                "iris_split": cfg.crop_size // 4,
                "onnx_required_ops": ("GridSample",), "coreml_required_ops": ("resample",)},
        landmarks=LANDMARKS,
        localisation_points=LOCALISATION_POINTS,
    )

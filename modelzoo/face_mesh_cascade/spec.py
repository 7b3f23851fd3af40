"""Spec of `face_mesh_cascade`: same I/O contract as `attention_mesh`."""
from __future__ import annotations

from ..attention_mesh.spec import LANDMARK_OUTPUTS, LANDMARKS, MEDIAPIPE_ATTRIBUTION, MEDIAPIPE_WHEEL, \
    image_input, landmark_outputs
from ..spec import DEFAULT_TARGETS, ModelSpec, WeightsSpec, landmark_tolerances
from .model import CascadeConfig

CONFIG = CascadeConfig()
SEED = 2019  # seeds the lips model (and every sub-model when built without weights)


def spec() -> ModelSpec:
    cfg = CONFIG
    return ModelSpec(
        id="face_mesh_cascade",
        description="Cascade baseline of the Attention Mesh paper: MediaPipe's face mesh model (192 input, "
                    "468 points + face flag), then MediaPipe's eye & iris model on two 64×64 eye crops of the "
                    "image (right eye mirrored) and a lips model on a 64×64 lips crop, in succession. Mesh and "
                    "iris weights imported from MediaPipe; the lips model has NO shipped weights (seeded random "
                    "init), so its 80 lips points are untrained",
        inputs=(image_input(cfg.input_size),),
        outputs=landmark_outputs(cfg.input_size),
        preprocessing="RGB face crop resized to 192×192, float32 in [0,1], NCHW",
        tolerances=landmark_tolerances(),
        targets=DEFAULT_TARGETS,
        weights=WeightsSpec(
            source=MEDIAPIPE_WHEEL,
            members=("mediapipe/modules/face_landmark/face_landmark.tflite",
                     "mediapipe/modules/iris_landmark/iris_landmark.tflite"),
            license="Apache-2.0", attribution=MEDIAPIPE_ATTRIBUTION,
            notes=f"lips sub-model: MediaPipe ships none; seeded random init (seed {SEED}), not trained. "
                  "Eye ROI follows MediaPipe's IrisLandmarkLandmarksToRoi (corners 33/133 and 362/263, "
                  f"scale {cfg.eye_scale}, square on the longer side); the right eye is mirrored for the "
                  "iris model"),
        landmark_outputs=LANDMARK_OUTPUTS,
        min_onnx_opset=16,
        config={"input_size": cfg.input_size, "eye_crop": cfg.eye_crop, "eye_scale": cfg.eye_scale,
                "left_eye_corners": list(cfg.left_eye_corners), "right_eye_corners": list(cfg.right_eye_corners),
                "lips_crop": cfg.lips_crop, "lips_scale": list(cfg.lips_scale),
                "lips_corners": list(cfg.lips_corners), "lips_weights": "seeded random init"},
        landmarks=LANDMARKS,
        localisation_points=("BlazeBlock",),   # its crops are sampled by a function, not a module
    )

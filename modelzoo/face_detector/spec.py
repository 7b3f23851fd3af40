"""Spec of `face_detector`: BlazeFace short-range, boxes decoded in the network."""
from __future__ import annotations

from ..attention_mesh.spec import MEDIAPIPE_ATTRIBUTION, MEDIAPIPE_WHEEL
from ..spec import DEFAULT_TARGETS, ModelSpec, TensorSpec, Tolerance, WeightsSpec
from .anchors import SHORT_RANGE
from .model import NUM_KEYPOINTS

NUM_ANCHORS = 896
# Measured with onnx2tf 1.29 on the sample face: full-integer quantisation moves boxes by 22 px
# and scores by 0.89; int8 weights with float activations still by 10 px and 0.125. A detector
# that misplaces the crop by 10 px is not worth shipping, so int8 is not a target.
TARGETS = tuple(t for t in DEFAULT_TARGETS if t != ("tflite", "int8"))
EXCLUDED = {"tflite/int8": "int8 moves boxes by up to 10 px of 128 and scores by 0.125 (onnx2tf 1.29, "
                           "weights-only int8; full-integer 22 px): not shipped"}


def _tolerances() -> dict:
    px = "input pixels (0..128)"
    tol = {}
    for fmt in ("onnx", "tflite", "coreml"):
        tol[(fmt, "fp32", "*")] = Tolerance(atol=1e-3, reason=f"boxes and keypoints in {px}; scores probabilities")
    for fmt in ("tflite", "coreml"):
        tol[(fmt, "fp16", "boxes")] = Tolerance(atol=0.25, reason="fp16 arithmetic through 17 blocks: a "
                                                "quarter pixel of the 128-px input (fp16 spacing at 128 is 1/16)")
        tol[(fmt, "fp16", "keypoints")] = tol[(fmt, "fp16", "boxes")]
        tol[(fmt, "fp16", "scores")] = Tolerance(atol=5e-3, reason="fp16 logits; probability error")
    gpu = Tolerance(atol=2.0, reason="fp16 arithmetic on the GPU accelerator through 17 blocks: worst measured "
                                     "0.69 px of the 128-px input")
    tol.update({("tflite", "fp16-compute", "boxes"): gpu, ("tflite", "fp16-compute", "keypoints"): gpu,
                ("tflite", "fp16-compute", "scores"): Tolerance(atol=0.02, reason="fp16 logits on the GPU "
                                                                "accelerator: worst measured 0.006")})
    return tol


def spec() -> ModelSpec:
    size = SHORT_RANGE.input_size
    px = f"input pixels (0..{size})"
    return ModelSpec(
        id="face_detector",
        description="BlazeFace short-range face detector (128 input, 896 SSD anchors, 6 keypoints) with "
                    "MediaPipe's face_detection_short_range weights; box decoding in the network",
        inputs=(TensorSpec("image", (None, 3, size, size), "float32", layout="NCHW", meaning="letterboxed photo",
                           units="intensity", value_range=(0.0, 1.0), channel_order="RGB"),),
        outputs=(
            TensorSpec("boxes", (None, NUM_ANCHORS, 4), meaning="per-anchor face box [x0, y0, x1, y1]", units=px),
            TensorSpec("keypoints", (None, NUM_ANCHORS, 2 * NUM_KEYPOINTS),
                       meaning="per-anchor keypoints (x, y)×6: right eye, left eye, nose tip, mouth, right ear, "
                               "left ear (the subject's)", units=px),
            TensorSpec("scores", (None, NUM_ANCHORS), meaning="per-anchor face probability (sigmoid of the "
                       "logit clipped to ±100)", units="probability", value_range=(0.0, 1.0)),
        ),
        preprocessing=f"RGB photo letterboxed (aspect kept, zero border) into {size}×{size}, float32 in [0,1], "
                      "NCHW; the network maps it to [-1,1]",
        tolerances=_tolerances(),
        targets=TARGETS,
        weights=WeightsSpec(source=MEDIAPIPE_WHEEL,
                            members=("mediapipe/modules/face_detection/face_detection_short_range.tflite",),
                            license="Apache-2.0", attribution=MEDIAPIPE_ATTRIBUTION),
        min_onnx_opset=16,
        config={"input_size": size, "anchors": NUM_ANCHORS, "strides": SHORT_RANGE.strides,
                "min_score": 0.5, "nms_iou": 0.3, "excluded_targets": EXCLUDED},
        localisation_points=("BlazeBlock",),
    )

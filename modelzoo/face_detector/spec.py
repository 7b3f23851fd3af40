"""Specs of the zoo's face detectors, BlazeFace short range (`face_detector`) and full range
(`face_detector_full`): one output contract (boxes, keypoints, scores decoded in the network).
Free of frameworks: importing this imports no torch."""
from __future__ import annotations

from ..fetch import MEDIAPIPE_ATTRIBUTION, MEDIAPIPE_SOURCE
from ..spec import DEFAULT_TARGETS, ModelSpec, TensorSpec, Tolerance, WeightsSpec
from .anchors import FULL_RANGE, NUM_KEYPOINTS, SHORT_RANGE, AnchorConfig, num_anchors

NUM_ANCHORS = num_anchors(SHORT_RANGE)
# Measured with onnx2tf 1.29 on the sample face: full-integer quantisation moves boxes by 22 px
# and scores by 0.89; int8 weights with float activations still by 10 px and 0.125. A detector
# that misplaces the crop by 10 px is not worth shipping, so int8 is not a target.
TARGETS = tuple(t for t in DEFAULT_TARGETS if t != ("tflite", "int8"))
EXCLUDED = {"tflite/int8": "int8 moves boxes by up to 10 px of 128 and scores by 0.125 (onnx2tf 1.29, "
                           "weights-only int8; full-integer 22 px): not shipped"}
EXCLUDED_FULL = {"tflite/int8": "not shipped, as for face_detector (int8 moves the short-range detector's boxes "
                                "by 10 px)"}


FP16_SCORES = Tolerance(atol=5e-3, reason="fp16 logits; probability error")


def _tolerances(size: int, fp16: Tolerance, gpu: Tolerance, gpu_scores: Tolerance,
                fp16_scores: Tolerance = FP16_SCORES) -> dict:
    px = f"input pixels (0..{size})"
    tol = {}
    for fmt in ("onnx", "tflite", "coreml"):
        tol[(fmt, "fp32", "*")] = Tolerance(atol=1e-3, reason=f"boxes and keypoints in {px}; scores probabilities")
    for fmt in ("tflite", "coreml"):
        tol[(fmt, "fp16", "boxes")] = fp16
        tol[(fmt, "fp16", "keypoints")] = fp16
        tol[(fmt, "fp16", "scores")] = fp16_scores
    tol.update({("tflite", "fp16-compute", "boxes"): gpu, ("tflite", "fp16-compute", "keypoints"): gpu,
                ("tflite", "fp16-compute", "scores"): gpu_scores})
    return tol


def _spec(model_id: str, description: str, anchors: AnchorConfig, member: str, tolerances: dict,
          excluded: dict) -> ModelSpec:
    size, n = anchors.input_size, num_anchors(anchors)
    px = f"input pixels (0..{size})"
    return ModelSpec(
        id=model_id,
        description=description,
        inputs=(TensorSpec("image", (None, 3, size, size), "float32", layout="NCHW", meaning="letterboxed photo",
                           units="intensity", value_range=(0.0, 1.0), channel_order="RGB"),),
        outputs=(
            TensorSpec("boxes", (None, n, 4), meaning="per-anchor face box [x0, y0, x1, y1]", units=px),
            TensorSpec("keypoints", (None, n, 2 * NUM_KEYPOINTS),
                       meaning="per-anchor keypoints (x, y)×6: right eye, left eye, nose tip, mouth, right ear, "
                               "left ear (the subject's)", units=px),
            TensorSpec("scores", (None, n), meaning="per-anchor face probability (sigmoid of the "
                       "logit clipped to ±100)", units="probability", value_range=(0.0, 1.0)),
        ),
        preprocessing=f"RGB photo letterboxed (aspect kept, zero border) into {size}×{size}, float32 in [0,1], "
                      "NCHW; the network maps it to [-1,1]",
        tolerances=tolerances,
        targets=TARGETS,
        weights=WeightsSpec(source=MEDIAPIPE_SOURCE, members=(f"mediapipe/modules/face_detection/{member}",),
                            license="Apache-2.0", attribution=MEDIAPIPE_ATTRIBUTION),
        min_onnx_opset=16,
        config={"input_size": size, "anchors": n, "strides": anchors.strides,
                "min_score": 0.5, "nms_iou": 0.3, "excluded_targets": excluded},
        localisation_points=("BlazeBlock",) if model_id == "face_detector" else ("Bottleneck",),
    )


def spec() -> ModelSpec:
    return _spec("face_detector", "BlazeFace short-range face detector (128 input, 896 SSD anchors, 6 keypoints) "
                 "with MediaPipe's face_detection_short_range weights; box decoding in the network", SHORT_RANGE,
                 "face_detection_short_range.tflite",
                 _tolerances(128, Tolerance(atol=0.25, reason="fp16 arithmetic through 17 blocks: a quarter pixel of "
                                            "the 128-px input (fp16 spacing at 128 is 1/16)"),
                             Tolerance(atol=2.0, reason="fp16 arithmetic on the GPU accelerator through 17 blocks: "
                                                        "worst measured 0.69 px of the 128-px input"),
                             Tolerance(atol=0.02, reason="fp16 logits on the GPU accelerator: worst measured 0.006")),
                 EXCLUDED)


def spec_full() -> ModelSpec:
    return _spec("face_detector_full", "BlazeFace full-range face detector (192 input, 2304 SSD anchors on a "
                 "48×48 map, 6 keypoints; finds faces down to a few percent of the frame) with MediaPipe's "
                 "face_detection_full_range_sparse weights (densified); box decoding in the network", FULL_RANGE,
                 "face_detection_full_range_sparse.tflite",
                 _tolerances(192, Tolerance(atol=1.0, reason="fp16 arithmetic through 20 bottleneck blocks and a "
                                            "top-down path: worst measured 0.39 px of the 192-px input (Core ML "
                                            "fp16 program, keypoints)"),
                             Tolerance(atol=3.0, reason="fp16 arithmetic on the GPU accelerator through 20 "
                                                        "bottleneck blocks and a top-down path: worst measured "
                                                        "1.05 px of the 192-px input"),
                             Tolerance(atol=0.03, reason="fp16 logits on the GPU accelerator: worst measured 0.013"),
                             Tolerance(atol=0.01, reason="fp16 logits; probability error: worst measured 0.0052 "
                                                         "(Core ML fp16 program, rotated face)")),
                 EXCLUDED_FULL)

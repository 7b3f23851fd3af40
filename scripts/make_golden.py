#!/usr/bin/env python3
"""Generate golden reference data for Meshport from MediaPipe itself.

This script is a *reference generator*: it runs Google's MediaPipe (0.10.21)
and writes its outputs to ``tests/data/golden`` so that Meshport's tests can
compare against them without MediaPipe installed.  It imports nothing from
this repository.

Environment (a throwaway venv OUTSIDE the repository)::

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image matplotlib pillow

(mediapipe 0.10.21 pins numpy<2; it pulls jax/jaxlib and opencv-contrib-python
but no torch.)  Then, from the repository root::

    /tmp/mpvenv/bin/python scripts/make_golden.py --out tests/data/golden

Inputs (nothing is downloaded, both photos ship inside the packages):

* ``grace_hopper``: ``matplotlib/mpl-data/sample_data/grace_hopper.jpg``
  (512x600), decoded with Pillow and converted to RGB.
* ``astronaut``: ``skimage.data.astronaut()`` (512x512 RGB).

Outputs
-------
``attention_mesh_golden.npz`` -- the face-mesh-with-attention model
(``mediapipe/modules/face_landmark/face_landmark_with_attention.tflite``,
sha256 asserted below) run by MediaPipe's own calculator graph on 6 fixed
192x192 crops (2 photos x {upright, rot+20, rot-20}):

* ``names`` (6,) str, ``crops`` uint8 (6,192,192,3) RGB.
* ``crop_center`` float64 (6,2) (x, y) and ``crop_side`` float64 (6,) in source
  image pixels, ``crop_angle_deg`` float64 (6,), ``crop_source`` (6,) str:
  how each crop was sampled (see ``sample_square`` for the exact mapping).
  The square's side is 1.5x the larger side of the axis-aligned bounding box
  of MediaPipe FaceMesh's 478 landmarks on the full photo, centred on that
  box's centre.  A positive angle rotates the *sampling square* clockwise on
  screen (MediaPipe's ``NormalizedRect.rotation`` convention, y pointing
  down), so the face appears rotated counter-clockwise in a "rot+20" crop.
  Bilinear interpolation, edge pixels replicated outside the photo, rounded
  to uint8.
* ``landmarks`` float32 (6,478,3): MediaPipe's 478 refined landmarks
  (``TensorsToFaceLandmarksWithAttention`` subgraph = 6 x
  TensorsToLandmarksCalculator + LandmarksRefinementCalculator, exactly as in
  MediaPipe's ``FaceLandmarkCpu`` graph) multiplied by 192: x, y in crop
  pixels, z in the model's raw units (MediaPipe divides z by the input width).
* ``face_flag`` float32 (6,): TensorsToFloatsCalculator(activation=SIGMOID)
  of ``conv_faceflag``, i.e. MediaPipe's face presence score.
* ``raw_output_mesh_identity`` (6,1404), ``raw_output_lips`` (6,160),
  ``raw_output_left_eye`` (6,142), ``raw_output_right_eye`` (6,142),
  ``raw_output_left_iris`` (6,10), ``raw_output_right_iris`` (6,10),
  ``raw_conv_faceflag`` (6,1): the 7 raw output tensors, float32, flattened.
  They ARE obtained from MediaPipe's graph: each tensor is split off with
  SplitTensorVectorCalculator and read out through TensorsToFloatsCalculator
  (no activation), which returns the tensor's float buffer unchanged.  Since
  SplitTensorVectorCalculator moves tensors out of a packet it must solely
  own, the raw copy comes from a second, identically configured inference
  node on the same input tensor; the script asserts that every one of the
  478 landmarks is reproduced (to < 1e-3 px) by the raw mesh/lips/eye/iris
  tensors, i.e. both inference nodes produced the same numbers.  The
  names/order are read from the .tflite flatbuffer's subgraph outputs.
  Note: the face-flag logits are ~19..29 for these crops, so the float32
  sigmoid ``face_flag`` is exactly 1.0; ``raw_conv_faceflag`` keeps the logit.

``fullimage_golden.npz`` -- the legacy end-to-end solutions on the full photos:

* ``names`` (2,), ``image_size`` int32 (2,2) as (w, h), ``image_sha256`` (2,)
  sha256 of the decoded uint8 RGB array (to detect a different JPEG decoder).
* ``landmarks`` float32 (F,478,3) + ``face_image_index`` int32 (F,):
  ``mp.solutions.face_mesh.FaceMesh(static_image_mode=True,
  refine_landmarks=True, max_num_faces=5)``, in image pixels (x*W, y*H, z*W).
* ``det_boxes`` float32 (D,4) [x0,y0,x1,y1] pixels, ``det_keypoints`` float32
  (D,6,2) pixels, ``det_scores`` float32 (D,), ``det_image_index`` int32 (D,):
  ``mp.solutions.face_detection.FaceDetection(model_selection=0,
  min_detection_confidence=0.5)`` (short-range model).

How the model is run on a crop
------------------------------
A CalculatorGraph built from text (``ATTENTION_GRAPH`` below).  Every node's
options are copied from MediaPipe's own ``FaceLandmarkCpu`` subgraph as
compiled into the 0.10.21 wheel (the wheel ships no .pbtxt; the expanded
config was dumped with
``mediapipe.python._framework_bindings.validated_graph_config``):

  ImageToTensorCalculator(192x192, float range [0,1], no NORM_RECT)
  -> InferenceCalculatorCpu(delegate xnnpack{}, op resolver from
     TfLiteCustomOpResolverCalculator = MediaPipe's custom ops)
  -> SplitTensorVectorCalculator([0,6), [6,7))
  -> TensorsToFaceLandmarksWithAttention (landmarks)
   + TensorsToFloatsCalculator(SIGMOID) (face flag).

Differences from FaceLandmarkCpu: there is no ROI (the whole 192x192 crop is
the region of interest, so LandmarkProjectionCalculator would be an identity
and is omitted), and the ThresholdingCalculator/GateCalculator on the face
flag is omitted so that landmarks are emitted even for a low face flag.

The XNNPACK delegate IS used (as in MediaPipe's FaceLandmarkCpu graph; the 3
custom ops run as TFLite custom kernels outside the delegate).  The script
also re-runs the crops with the plain TFLite CPU kernels
(``delegate { tflite {} }``) and prints the largest difference to the stored
(XNNPACK) outputs.

ImageToTensor identity: with no NORM_RECT the ROI is the whole image, so for
a 192x192 input the affine warp is the identity and the only operation is
uint8 -> float scaling by 1/255.  This is checked, not just assumed: the graph
also exports the ImageToTensor output tensor and the script asserts that it
equals ``crop.astype(float32) / 255`` to within 1e-6 (float rounding).

The script is deterministic (fixed inputs, no randomness); it runs each graph
twice and asserts bit-identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

MODEL_REL = "modules/face_landmark/face_landmark_with_attention.tflite"
MODEL_SHA256 = "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"
MP_VERSION = "0.10.21"
CROP = 192
ANGLES = (("upright", 0.0), ("rot+20", 20.0), ("rot-20", -20.0))
ROI_SCALE = 1.5

# Expected raw outputs of the attention model, in the model's output order.
RAW_OUTPUTS = (
    ("output_mesh_identity", 1404),
    ("output_lips", 160),
    ("output_left_eye", 142),
    ("output_right_eye", 142),
    ("output_left_iris", 10),
    ("output_right_iris", 10),
    ("conv_faceflag", 1),
)

# Left-eye contour points (the first 16 indices of MediaPipe's left-eye
# refinement mapping, also used for the left iris' z average).
LEFT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160,
                    159, 158, 157, 173)
RIGHT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388,
                     387, 386, 385, 384, 398)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_photos():
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        grace = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    astro = np.ascontiguousarray(skimage.data.astronaut().astype(np.uint8))
    assert astro.ndim == 3 and astro.shape[2] == 3
    return [("grace_hopper", grace), ("astronaut", astro)]


def read_tflite_output_names(model_path: str) -> list[str]:
    """Names of the first subgraph's output tensors, read from the flatbuffer."""
    import flatbuffers
    from flatbuffers import table

    buf = bytearray(open(model_path, "rb").read())

    def tab(b, pos):
        return table.Table(b, pos)

    def field(t, idx):
        return t.Offset(4 + 2 * idx)

    root = tab(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    # Model.subgraphs is field 2
    o = field(root, 2)
    assert o, "no subgraphs"
    vec = root.Vector(o)
    sg = tab(buf, root.Indirect(vec))  # subgraph 0
    # SubGraph.tensors = field 0, SubGraph.outputs = field 2
    ot = field(sg, 0)
    tvec, ntens = sg.Vector(ot), sg.VectorLen(ot)
    oo = field(sg, 2)
    ovec, nout = sg.Vector(oo), sg.VectorLen(oo)
    names = []
    for i in range(nout):
        ti = flatbuffers.encode.Get(flatbuffers.packer.int32, buf, ovec + 4 * i)
        assert 0 <= ti < ntens
        tt = tab(buf, sg.Indirect(tvec + 4 * ti))
        on = field(tt, 3)  # Tensor.name
        names.append(tt.String(on + tt.Pos).decode("utf-8"))
    return names


# --------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------
def sample_square(img: np.ndarray, center, side: float, angle_deg: float,
                  size: int = CROP) -> np.ndarray:
    """Bilinear resample of a (rotated) square of ``img`` to size x size.

    Continuous image coordinates put pixel (col k, row l) centre at
    (k + 0.5, l + 0.5).  Output pixel (row i, col j) samples the source at

        u = (j + 0.5) / size - 0.5,   v = (i + 0.5) / size - 0.5
        X = cx + side * (cos(a) * u - sin(a) * v)
        Y = cy + side * (sin(a) * u + cos(a) * v)

    with a = angle_deg in radians (clockwise on screen for a > 0, y down),
    bilinear interpolation between the 4 neighbouring pixel centres, source
    indices clamped to the image (edge replication), rounded half-to-even and
    clipped to uint8.
    """
    h, w = img.shape[:2]
    cx, cy = float(center[0]), float(center[1])
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    t = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    u = t[None, :]
    v = t[:, None]
    X = cx + side * (c * u - s * v) - 0.5  # to index coordinates
    Y = cy + side * (s * u + c * v) - 0.5
    x0 = np.floor(X)
    y0 = np.floor(Y)
    fx = (X - x0)[..., None]
    fy = (Y - y0)[..., None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    f = img.astype(np.float64)
    out = ((1 - fy) * ((1 - fx) * f[ya, xa] + fx * f[ya, xb])
           + fy * ((1 - fx) * f[yb, xa] + fx * f[yb, xb]))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------
# Legacy solutions on full images
# --------------------------------------------------------------------------
def run_face_mesh(img: np.ndarray) -> np.ndarray:
    """(F,478,3) landmarks in pixels (x*W, y*H, z*W) from legacy FaceMesh."""
    import mediapipe as mp

    h, w = img.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True,
                                         refine_landmarks=True,
                                         max_num_faces=5) as fm:
        res = fm.process(img)
    faces = []
    for lm in res.multi_face_landmarks or []:
        a = np.array([[p.x, p.y, p.z] for p in lm.landmark], dtype=np.float64)
        assert a.shape == (478, 3), a.shape
        a *= np.array([w, h, w], dtype=np.float64)
        faces.append(a.astype(np.float32))
    return np.stack(faces) if faces else np.zeros((0, 478, 3), np.float32)


def run_face_detection(img: np.ndarray):
    """Short-range detector: boxes (D,4) x0y0x1y1, keypoints (D,6,2), scores."""
    import mediapipe as mp

    h, w = img.shape[:2]
    with mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.5) as fd:
        res = fd.process(img)
    boxes, kps, scores = [], [], []
    for d in res.detections or []:
        bb = d.location_data.relative_bounding_box
        boxes.append([bb.xmin * w, bb.ymin * h,
                      (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
        k = [[p.x * w, p.y * h] for p in d.location_data.relative_keypoints]
        assert len(k) == 6, len(k)
        kps.append(k)
        scores.append(d.score[0])
    return (np.array(boxes, np.float32).reshape(-1, 4),
            np.array(kps, np.float32).reshape(-1, 6, 2),
            np.array(scores, np.float32).reshape(-1))


# --------------------------------------------------------------------------
# Attention model through MediaPipe's calculator graph
# --------------------------------------------------------------------------
ATTENTION_GRAPH = r"""
input_stream: "image"
output_stream: "landmarks"
output_stream: "face_flag"
output_stream: "input_floats"
%(raw_output_streams)s

# Options copied from MediaPipe 0.10.21 FaceLandmarkCpu (expanded config).
node {
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:image"
  output_stream: "TENSORS:input_tensors"
  options {
    [mediapipe.ImageToTensorCalculatorOptions.ext] {
      output_tensor_width: 192
      output_tensor_height: 192
      output_tensor_float_range { min: 0.0 max: 1.0 }
    }
  }
}
node {
  calculator: "TensorsToFloatsCalculator"
  input_stream: "TENSORS:input_tensors"
  output_stream: "FLOATS:input_floats"
}
node {
  calculator: "TfLiteCustomOpResolverCalculator"
  output_side_packet: "OP_RESOLVER:op_resolver"
}
node {
  calculator: "InferenceCalculatorCpu"
  input_stream: "TENSORS:input_tensors"
  output_stream: "TENSORS:output_tensors"
  input_side_packet: "OP_RESOLVER:op_resolver"
  options {
    [mediapipe.InferenceCalculatorOptions.ext] {
      model_path: "%(model_path)s"
      delegate { %(delegate)s {} }
    }
  }
}
node {
  calculator: "SplitTensorVectorCalculator"
  input_stream: "output_tensors"
  output_stream: "landmark_tensors"
  output_stream: "face_flag_tensor"
  options {
    [mediapipe.SplitVectorCalculatorOptions.ext] {
      ranges { begin: 0 end: 6 }
      ranges { begin: 6 end: 7 }
    }
  }
}
node {
  calculator: "TensorsToFloatsCalculator"
  input_stream: "TENSORS:face_flag_tensor"
  output_stream: "FLOAT:face_flag"
  options {
    [mediapipe.TensorsToFloatsCalculatorOptions.ext] { activation: SIGMOID }
  }
}
node {
  calculator: "TensorsToFaceLandmarksWithAttention"
  input_stream: "TENSORS:landmark_tensors"
  output_stream: "LANDMARKS:landmarks"
}

# Raw tensors.  SplitTensorVectorCalculator *moves* tensors out of its input
# packet (it must be the packet's sole owner), so "output_tensors" cannot feed
# two splitters.  A second, identically configured inference node on the same
# input tensors produces the copy that is split into 7 single-tensor vectors
# and read out as floats (the script checks both copies agree).
node {
  calculator: "InferenceCalculatorCpu"
  input_stream: "TENSORS:input_tensors"
  output_stream: "TENSORS:output_tensors_raw"
  input_side_packet: "OP_RESOLVER:op_resolver"
  options {
    [mediapipe.InferenceCalculatorOptions.ext] {
      model_path: "%(model_path)s"
      delegate { %(delegate)s {} }
    }
  }
}
node {
  calculator: "SplitTensorVectorCalculator"
  input_stream: "output_tensors_raw"
%(raw_split_outputs)s
  options {
    [mediapipe.SplitVectorCalculatorOptions.ext] {
%(raw_split_ranges)s
    }
  }
}
%(raw_float_nodes)s
"""


def attention_graph_text(model_path: str, delegate: str) -> str:
    n = len(RAW_OUTPUTS)
    return ATTENTION_GRAPH % dict(
        model_path=model_path,
        delegate=delegate,
        raw_output_streams="\n".join(
            f'output_stream: "raw_{i}"' for i in range(n)),
        raw_split_outputs="\n".join(
            f'  output_stream: "raw_tensor_{i}"' for i in range(n)),
        raw_split_ranges="\n".join(
            f"      ranges {{ begin: {i} end: {i + 1} }}" for i in range(n)),
        raw_float_nodes="\n".join(
            "node {\n  calculator: \"TensorsToFloatsCalculator\"\n"
            f'  input_stream: "TENSORS:raw_tensor_{i}"\n'
            f'  output_stream: "FLOATS:raw_{i}"\n}}' for i in range(n)),
    )


def run_attention_graph(crops: np.ndarray, model_path: str, delegate: str):
    import mediapipe as mp
    from mediapipe.framework import calculator_pb2
    from google.protobuf import text_format

    cfg = text_format.Parse(attention_graph_text(model_path, delegate),
                            calculator_pb2.CalculatorGraphConfig())
    graph = mp.CalculatorGraph(graph_config=cfg)
    got: dict[str, dict[int, object]] = {}

    def observe(name, getter):
        got[name] = {}

        def cb(stream_name, packet):
            got[name][packet.timestamp.value] = getter(packet)

        graph.observe_output_stream(name, cb)

    def get_landmarks(packet):
        from mediapipe.framework.formats import landmark_pb2
        lm = mp.packet_getter.get_proto(packet)
        assert isinstance(lm, landmark_pb2.NormalizedLandmarkList)
        return np.array([[p.x, p.y, p.z] for p in lm.landmark], np.float32)

    observe("landmarks", get_landmarks)
    observe("face_flag", mp.packet_getter.get_float)
    observe("input_floats",
            lambda p: np.array(mp.packet_getter.get_float_list(p), np.float32))
    for i in range(len(RAW_OUTPUTS)):
        observe(f"raw_{i}",
                lambda p: np.array(mp.packet_getter.get_float_list(p), np.float32))

    graph.start_run()
    for t, crop in enumerate(crops):
        pkt = mp.packet_creator.create_image_frame(
            image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop))
        graph.add_packet_to_input_stream("image", pkt.at(t))
    graph.close()

    n = len(crops)
    for name, d in got.items():
        assert sorted(d) == list(range(n)), (name, sorted(d))
    out = {
        "landmarks": np.stack([got["landmarks"][t] for t in range(n)]),
        "face_flag": np.array([got["face_flag"][t] for t in range(n)], np.float32),
        "input_floats": np.stack([got["input_floats"][t] for t in range(n)]),
    }
    for i, (name, size) in enumerate(RAW_OUTPUTS):
        a = np.stack([got[f"raw_{i}"][t] for t in range(n)])
        assert a.shape == (n, size), (name, a.shape)
        out["raw_" + name] = a
    return out


# --------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(argv)

    import mediapipe as mp

    assert mp.__version__ == MP_VERSION, mp.__version__
    mp_dir = os.path.dirname(os.path.abspath(mp.__file__))
    model_path = os.path.join(mp_dir, MODEL_REL)
    digest = sha256_file(model_path)
    assert digest == MODEL_SHA256, f"unexpected model sha256 {digest}"
    names_in_model = read_tflite_output_names(model_path)
    assert names_in_model == [n for n, _ in RAW_OUTPUTS], names_in_model
    print(f"mediapipe {mp.__version__}; model {model_path}")
    print(f"model outputs: {names_in_model}")

    photos = load_photos()

    # ---- full-image golden ------------------------------------------------
    fi_lm, fi_lm_idx = [], []
    fi_box, fi_kp, fi_sc, fi_det_idx = [], [], [], []
    face_for_crop = {}
    for k, (name, img) in enumerate(photos):
        lms = run_face_mesh(img)
        lms2 = run_face_mesh(img)
        assert np.array_equal(lms, lms2), "FaceMesh not deterministic"
        boxes, kps, scores = run_face_detection(img)
        print(f"[full] {name} {img.shape[1]}x{img.shape[0]}: "
              f"{len(lms)} face(s), {len(boxes)} detection(s), "
              f"scores {np.round(scores, 4).tolist()}, "
              f"boxes {np.round(boxes, 1).tolist()}")
        assert len(lms) >= 1, f"no face found in {name}"
        fi_lm.append(lms)
        fi_lm_idx += [k] * len(lms)
        fi_box.append(boxes)
        fi_kp.append(kps)
        fi_sc.append(scores)
        fi_det_idx += [k] * len(boxes)
        # largest face for the crops
        areas = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in lms]
        face_for_crop[name] = lms[int(np.argmax(areas))]

    fullimage = dict(
        names=np.array([n for n, _ in photos]),
        image_size=np.array([[im.shape[1], im.shape[0]] for _, im in photos],
                            np.int32),
        image_sha256=np.array([hashlib.sha256(im.tobytes()).hexdigest()
                               for _, im in photos]),
        landmarks=np.concatenate(fi_lm).astype(np.float32),
        face_image_index=np.array(fi_lm_idx, np.int32),
        det_boxes=np.concatenate(fi_box).astype(np.float32),
        det_keypoints=np.concatenate(fi_kp).astype(np.float32),
        det_scores=np.concatenate(fi_sc).astype(np.float32),
        det_image_index=np.array(fi_det_idx, np.int32),
    )

    # ---- crops -------------------------------------------------------------
    crops, crop_names, centers, sides, angles, sources = [], [], [], [], [], []
    for name, img in photos:
        f = face_for_crop[name]
        x0, y0 = f[:, 0].min(), f[:, 1].min()
        x1, y1 = f[:, 0].max(), f[:, 1].max()
        center = (0.5 * (float(x0) + float(x1)), 0.5 * (float(y0) + float(y1)))
        side = ROI_SCALE * max(float(x1 - x0), float(y1 - y0))
        for tag, ang in ANGLES:
            crops.append(sample_square(img, center, side, ang))
            crop_names.append(f"{name}_{tag}")
            centers.append(center)
            sides.append(side)
            angles.append(ang)
            sources.append(name)
    crops = np.stack(crops)

    # ---- attention model via MediaPipe graph ----------------------------
    res = run_attention_graph(crops, model_path, "xnnpack")
    res2 = run_attention_graph(crops, model_path, "xnnpack")
    for k in res:
        assert np.array_equal(res[k], res2[k]), f"non-deterministic: {k}"

    # ImageToTensor must be an identity (up to /255) on a 192x192 input.
    expect = crops.reshape(len(crops), -1).astype(np.float32) / np.float32(255)
    itt_err = float(np.abs(res["input_floats"] - expect).max())
    print(f"ImageToTensor vs crop/255: max abs diff {itt_err:.3g}")
    assert itt_err < 1e-6, itt_err

    # Cross-check against the plain TFLite CPU kernels (no XNNPACK).
    ref = run_attention_graph(crops, model_path, "tflite")
    for k in ["landmarks", "face_flag"] + [f"raw_{n}" for n, _ in RAW_OUTPUTS]:
        scale = CROP if k == "landmarks" else 1  # landmarks: in crop pixels
        print(f"xnnpack vs tflite delegate, {k}: max abs diff "
              f"{scale * float(np.abs(res[k] - ref[k]).max()):.3g}")

    landmarks = res["landmarks"]
    assert landmarks.shape == (len(crops), 478, 3), landmarks.shape
    landmarks_px = (landmarks.astype(np.float64) * CROP).astype(np.float32)

    # Consistency: mesh part of the refined landmarks = raw mesh tensor,
    # iris x/y = raw iris tensors.
    raw_mesh = res["raw_output_mesh_identity"].reshape(-1, 468, 3)
    d_mesh = np.abs(landmarks_px[:, :468, :2] - raw_mesh[..., :2])
    print(f"refined landmarks vs raw mesh (x,y) max diff over all 468: "
          f"{float(d_mesh.max()):.3g} px")
    raw_liris = res["raw_output_left_iris"].reshape(-1, 5, 2)
    d_iris = float(np.abs(landmarks_px[:, 468:473, :2] - raw_liris).max())
    print(f"landmarks[468:473] vs raw left iris: max diff {d_iris:.3g} px")
    assert d_iris < 1e-3
    # Every one of the first 468 refined points (x, y) must be a point of the
    # raw mesh, lips or eye tensors -> the raw copy is the same inference.
    cand = np.concatenate([
        raw_mesh[..., :2],
        res["raw_output_lips"].reshape(-1, 80, 2),
        res["raw_output_left_eye"].reshape(-1, 71, 2),
        res["raw_output_right_eye"].reshape(-1, 71, 2)], axis=1)
    dmin = np.abs(landmarks_px[:, :468, None, :2] - cand[:, None]).max(-1).min(-1)
    n_mesh = int((d_mesh.max(-1) < 1e-3).sum(-1).min())
    print(f"landmarks[:468] explained by raw tensors: max diff "
          f"{float(dmin.max()):.3g} px; min #points equal to raw mesh {n_mesh}")
    assert float(dmin.max()) < 1e-3

    print("\nper crop:")
    for i, n in enumerate(crop_names):
        L = landmarks_px[i]
        eye = L[list(LEFT_EYE_CONTOUR), :2]
        reye = L[list(RIGHT_EYE_CONTOUR), :2]
        eye_c = eye.mean(0)
        d_left = float(np.linalg.norm(L[468, :2] - eye_c))
        d_right = float(np.linalg.norm(L[468, :2] - reye.mean(0)))
        eye_w = float(np.linalg.norm(L[33, :2] - L[133, :2]))
        print(f"  {n:22s} flag={res['face_flag'][i]:.6f} "
              f"x[{L[:, 0].min():6.1f},{L[:, 0].max():6.1f}] "
              f"y[{L[:, 1].min():6.1f},{L[:, 1].max():6.1f}] "
              f"z[{L[:, 2].min():6.1f},{L[:, 2].max():6.1f}]  "
              f"iris468->left-eye centre {d_left:.2f}px "
              f"(eye width {eye_w:.1f}px, ->right eye {d_right:.1f}px)")
        assert res["face_flag"][i] > 0.5, n
        assert L[:, :2].min() >= 0 and L[:, :2].max() <= CROP, n
        assert d_left < 0.5 * eye_w and d_left < d_right, n

    golden = dict(
        names=np.array(crop_names),
        crops=crops,
        crop_source=np.array(sources),
        crop_center=np.array(centers, np.float64),
        crop_side=np.array(sides, np.float64),
        crop_angle_deg=np.array(angles, np.float64),
        landmarks=landmarks_px,
        face_flag=res["face_flag"].astype(np.float32),
    )
    for name, _ in RAW_OUTPUTS:
        golden["raw_" + name] = res["raw_" + name].astype(np.float32)

    os.makedirs(args.out, exist_ok=True)
    p1 = os.path.join(args.out, "attention_mesh_golden.npz")
    p2 = os.path.join(args.out, "fullimage_golden.npz")
    np.savez_compressed(p1, **golden)
    np.savez_compressed(p2, **fullimage)
    for p in (p1, p2):
        print(f"wrote {p} ({os.path.getsize(p)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Typed model specs: the I/O contract, preprocessing, tolerances and targets of a zoo model."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

FORMATS = ("pytorch", "onnx", "tflite", "coreml")
PRECISIONS = ("fp32", "fp16", "int8")
# Tolerance keys that are no artifact precision: "fp16-compute" bounds any artifact run by a
# runtime that imposes fp16 arithmetic (the GPU accelerator's default; modelzoo.tolerances).
TOLERANCE_ONLY_PRECISIONS = ("fp16-compute",)


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output. `shape` uses None for the dynamic batch dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    layout: str | None = None  # "NCHW" / "NHWC" for images, None otherwise
    meaning: str = ""
    units: str = ""
    value_range: tuple[float, float] | None = None
    channel_order: str | None = None  # "RGB" for images

    def matches_shape(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape)
        )

    def describe(self) -> str:
        dims = ",".join("N" if d is None else str(d) for d in self.shape)
        extra = []
        if self.layout:
            extra.append(self.layout)
        if self.channel_order:
            extra.append(self.channel_order)
        if self.value_range:
            extra.append(f"values in [{self.value_range[0]:g},{self.value_range[1]:g}]")
        tail = f" {' '.join(extra)}" if extra else ""
        return f"{self.name}: {self.dtype}[{dims}]{tail}"


@dataclass(frozen=True)
class Tolerance:
    """How close a candidate must be to the reference for one output.

    `atol` bounds the max absolute error; `rtol` bounds it relative to the largest |reference|
    value of the output (with both, the bound is atol + rtol·max|ref|); `max_px`/`mean_iod_pct`
    are landmark bounds (px in input pixels; mean error as % of the inter-ocular distance).
    None = not checked.
    """

    atol: float | None = None
    max_px: float | None = None
    mean_iod_pct: float | None = None
    reason: str = ""
    rtol: float | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """Where pretrained weights come from and under which licence."""

    source: str
    members: tuple[str, ...]
    license: str
    attribution: str
    notes: str = ""


@dataclass(frozen=True)
class LandmarkSpec:
    """What generic landmark metrics need of a model: the output holding the points, how many
    points a face has, named regions (region name → landmark indices; "all" among them) and the
    landmark pair whose distance is the inter-ocular distance (None: no %IOD figures)."""

    output: str
    points: int
    regions: Mapping[str, tuple[int, ...]]
    iod_pair: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        regions = {str(k): tuple(int(i) for i in v) for k, v in self.regions.items()}
        object.__setattr__(self, "regions", regions)
        if self.iod_pair is not None:
            object.__setattr__(self, "iod_pair", tuple(int(i) for i in self.iod_pair))
        if self.points < 1:
            raise ValueError(f"landmarks {self.output!r}: points must be positive, not {self.points}")
        if "all" not in regions:
            raise ValueError(f"landmarks {self.output!r}: regions need an 'all' entry; has {sorted(regions)}")
        for name, idx in regions.items():
            if not idx:
                raise ValueError(f"landmarks {self.output!r}: region {name!r} is empty")
            if len(set(idx)) != len(idx):
                raise ValueError(f"landmarks {self.output!r}: region {name!r} lists an index twice")
            bad = [i for i in idx if not 0 <= i < self.points]
            if bad:
                raise ValueError(f"landmarks {self.output!r}: region {name!r} has indices outside "
                                 f"[0, {self.points}): {bad[:5]}")
        if self.iod_pair is not None:
            if len(self.iod_pair) != 2 or self.iod_pair[0] == self.iod_pair[1] \
                    or not all(0 <= i < self.points for i in self.iod_pair):
                raise ValueError(f"landmarks {self.output!r}: iod_pair must be two distinct indices in "
                                 f"[0, {self.points}), not {self.iod_pair}")

    def inter_ocular_distance(self, landmarks: Any) -> float | None:
        """The IOD of one face's (points, 2|3) landmarks (a leading batch of one is accepted);
        None without an IOD pair, for another point count, or when the distance is 0."""
        if self.iod_pair is None:
            return None
        from .metrics import inter_ocular_distance
        return inter_ocular_distance(landmarks, self.iod_pair, self.points)

    def to_dict(self) -> dict[str, Any]:
        # Regions as an ordered list: their order is the order of the figures in parity.json.
        return {"output": self.output, "points": self.points,
                "regions": [[name, list(idx)] for name, idx in self.regions.items()],
                "iod_pair": None if self.iod_pair is None else list(self.iod_pair)}


@dataclass(frozen=True)
class ModelSpec:
    id: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: str
    # key: (format, precision, output name or "*") -> Tolerance
    tolerances: Mapping[tuple[str, str, str], Tolerance] = field(default_factory=dict)
    targets: tuple[tuple[str, str], ...] = ()  # enabled (format, precision) pairs
    weights: WeightsSpec | None = None
    landmark_outputs: tuple[str, ...] = ()
    min_onnx_opset: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    # The face's points and their regions for landmark metrics; None: no landmark metrics.
    landmarks: LandmarkSpec | None = None
    # Modules (class names, or module paths in the model) whose outputs the localiser records
    # in PyTorch, besides every leaf module.
    localisation_points: tuple[str, ...] = ()

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, "input", self.id)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, "output", self.id)

    def tolerance(self, fmt: str, precision: str, output: str) -> Tolerance:
        """The tolerance for one output, falling back to the format×precision default ("*")."""
        for key in ((fmt, precision, output), (fmt, precision, "*")):
            if key in self.tolerances:
                return self.tolerances[key]
        raise KeyError(f"{self.id}: no tolerance for {fmt}/{precision}/{output}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # rtol only where set: specs without relative bounds keep the digest they always had.
        d["tolerances"] = [
            {"format": f, "precision": p, "output": o,
             **{k: v for k, v in dataclasses.asdict(t).items() if k != "rtol" or v is not None}}
            for (f, p, o), t in sorted(self.tolerances.items())
        ]
        d["config"] = dict(self.config)
        d["landmarks"] = None if self.landmarks is None else self.landmarks.to_dict()
        return d

    def sha256(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()

    def __post_init__(self) -> None:
        for fmt, prec in self.targets:
            if fmt not in FORMATS or prec not in PRECISIONS:
                raise ValueError(f"{self.id}: unknown target {fmt}/{prec}")
        for (fmt, prec, _out) in self.tolerances:
            if fmt not in FORMATS or prec not in PRECISIONS + TOLERANCE_ONLY_PRECISIONS:
                raise ValueError(f"{self.id}: tolerance for unknown target {fmt}/{prec}")
        names = [t.name for t in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id}: duplicate output names {names}")
        for name in self.landmark_outputs:
            self.output(name)
        if self.landmarks is not None:
            lm = self.landmarks
            if lm.output not in self.landmark_outputs:
                raise ValueError(f"{self.id}: landmarks output {lm.output!r} is not among the landmark outputs "
                                 f"{list(self.landmark_outputs)}")
            shape = self.output(lm.output).shape
            if len(shape) < 2 or shape[-2] not in (None, lm.points):
                raise ValueError(f"{self.id}: output {lm.output!r} has shape {shape}, not (..., {lm.points}, C) "
                                 f"as its landmarks declare")
        if isinstance(self.localisation_points, str) or not all(
                isinstance(p, str) and p for p in self.localisation_points):
            raise ValueError(f"{self.id}: localisation_points must be a tuple of module class names or paths, "
                             f"not {self.localisation_points!r}")


def _by_name(items: tuple[TensorSpec, ...], name: str, what: str, model: str) -> TensorSpec:
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(t.name for t in items)
    raise KeyError(f"{model} has no {what} {name!r}; known: {known}")


def landmark_tolerances(fp32_px: float = 1e-3, presence: str = "face_flag") -> dict[tuple[str, str, str], Tolerance]:
    """DESIGN §5 starting points, shared by the landmark models (coordinates in input pixels of a
    192–256 px crop). Every entry bounds every input set: max abs / max px as well as %IOD."""
    tol: dict[tuple[str, str, str], Tolerance] = {}
    flag = Tolerance(atol=0.02, reason="presence probability: a logit error of 0.08 at the sigmoid's "
                                       "steepest slope (0.25)")
    for fmt in ("onnx", "tflite", "coreml"):
        tol[(fmt, "fp32", "*")] = Tolerance(atol=fp32_px, max_px=fp32_px)
    for fmt in ("tflite", "coreml"):
        tol[(fmt, "fp16", "*")] = Tolerance(
            atol=0.25, max_px=0.25, mean_iod_pct=0.05,
            reason="fp16 weights and arithmetic: mean IOD error; any point within two fp16 spacings at "
                   "128–256 px (0.125 each)")
        tol[(fmt, "fp16", presence)] = flag
    tol[("tflite", "int8", "*")] = Tolerance(
        atol=5.0, max_px=5.0, mean_iod_pct=1.0,
        reason="int8 weights: mean IOD error on faces; any point within 5 px (worst measured 2.4 px, on "
               "seeded noise)")
    tol[("tflite", "int8", presence)] = flag
    tol[("tflite", "fp16-compute", "*")] = Tolerance(
        atol=2.5, max_px=2.5, mean_iod_pct=1.0,
        reason="fp16 arithmetic on the GPU accelerator through the whole backbone: MediaPipe's own "
               "face_landmark.tflite measures 0.31% IOD mean / 0.8 px max there, ours 0.29% / 1.0 px; a 5-point "
               "iris of an occluded eye 0.52%")
    tol[("tflite", "fp16-compute", presence)] = flag
    return tol


DEFAULT_TARGETS = (
    ("onnx", "fp32"),
    ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"),
    ("coreml", "fp32"), ("coreml", "fp16"),
)

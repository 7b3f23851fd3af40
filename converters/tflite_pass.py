"""The TFLite pass contract: a `Pass` rewrites a `runtime.tflite.Graph` in place and says how
much it changed; it declares `requires` (preconditions) and `ensures` (postconditions) as
`Condition`s on the graph. `run` checks them around `apply`, with a well-formed graph (every op
reads only tensors already written, every output is written) on both sides; a condition that does
not hold raises `PassConditionError` naming the pass and the condition.

Passes register by name (`register_pass`; a duplicate raises); `pipeline()` is the registered
passes that run on every onnx2tf output, in registration order, so a new pass is one class."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from runtime.registry import Registry
from runtime.tflite import Graph, TFLiteFormatError

from .base import ConversionError

STEP = "tflite-passes"


@dataclass(frozen=True)
class Condition:
    """A statement about a graph; `check` returns what violates it (empty: it holds)."""
    text: str
    check: Callable[[Graph], list[str]]


class PassConditionError(ConversionError):
    """A pass's precondition did not hold before it ran, or its postcondition after."""

    def __init__(self, pass_name: str, when: str, condition: Condition, violations: list[str]):
        self.pass_name, self.when, self.condition, self.violations = pass_name, when, condition, violations
        shown = "; ".join(violations[:5]) + (f"; … {len(violations) - 5} more" if len(violations) > 5 else "")
        super().__init__(STEP, f"{when} {condition.text!r} does not hold: {shown}", node=pass_name)


def _well_formed(g: Graph) -> list[str]:
    written = set(g.inputs) | {t.index for t in g.tensors if t.const}
    bad = []
    for op in g.ops:
        bad += [f"op {op.index} ({op.kind}) reads tensor {t} {g.tensor(t).name!r} before it is written"
                for t in op.inputs if t >= 0 and t not in written]
        bad += [f"op {op.index} ({op.kind}) writes tensor {t} {g.tensor(t).name!r} a second time"
                for t in op.outputs if t in written]
        written.update(op.outputs)
    return bad + [f"graph output {t} {g.tensor(t).name!r} is never written" for t in g.outputs if t not in written]


WELL_FORMED = Condition("every op reads tensors already written and every graph output is written", _well_formed)


class Pass:
    """One rewrite of a TFLite graph. Subclasses set `name`, `record_key` (the build-record counter),
    `label` (what it does, for messages), `requires`/`ensures`, and implement `apply`."""
    name: ClassVar[str]
    record_key: ClassVar[str]
    label: ClassVar[str]
    in_pipeline: ClassVar[bool] = True       # runs on every onnx2tf output (takes no arguments)
    exact: ClassVar[bool] = True             # leaves every output as it was (callers verify it)
    requires: tuple[Condition, ...] = ()
    ensures: tuple[Condition, ...] = ()

    def apply(self, g: Graph) -> int:
        """Rewrite `g` in place; how many places changed."""
        raise NotImplementedError

    def check(self, g: Graph, when: str, conditions: tuple[Condition, ...]) -> None:
        for cond in (WELL_FORMED, *conditions):
            violations = cond.check(g)
            if violations:
                raise PassConditionError(self.name, when, cond, violations)

    def run(self, g: Graph) -> int:
        """`apply` between the checks of its preconditions and postconditions."""
        self.check(g, "precondition", self.requires)
        n = self.apply(g)
        self.check(g, "postcondition", self.ensures)
        return n

    def __call__(self, buf: bytes) -> tuple[bytes, int]:
        """The pass on serialised bytes: (new bytes, count)."""
        g = load_graph(buf)
        n = self.run(g)
        return g.to_bytes(), n


PASSES: Registry[type[Pass]] = Registry("TFLite pass")


def register_pass(cls: type[Pass]) -> type[Pass]:
    return PASSES.add(cls.name, cls)


def get_pass(name: str, *args, **kwargs) -> Pass:
    return PASSES.get_known(name)(*args, **kwargs)


def pipeline() -> list[Pass]:
    """The passes every onnx2tf output goes through, in order."""
    return [cls() for cls in PASSES.values() if cls.in_pipeline]


def load_graph(buf: bytes) -> Graph:
    """The pass input as a graph; unreadable bytes raise ConversionError."""
    try:
        return Graph.from_bytes(buf, "pass input")
    except TFLiteFormatError as exc:
        raise ConversionError(STEP, str(exc)) from exc

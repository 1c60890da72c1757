"""Read a TensorFlow Lite flatbuffer as data: its tensors (constants as numpy arrays) and its operators in
execution order. No interpreter runs; nothing in the file is executed.

Needs the optional extra `kwsbench[tflite]` (the `tflite` package: the flatbuffer schema compiled to pure
Python, so it installs on any platform and Python, and it exposes the operator graph, which conversion uses
to find each weight by its place in the graph rather than by its name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kwsbench.errors import BadInputError, MissingDependencyError

EXTRA_HINT = "pip install 'kwsbench[tflite]'"


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constant contents, None for activations


@dataclass(frozen=True)
class Op:
    index: int
    kind: str  # builtin operator name, e.g. "FULLY_CONNECTED"
    inputs: tuple[int, ...]  # tensor indices, -1 = optional input absent
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def const(self, index: int) -> np.ndarray | None:
        return None if index < 0 else self.tensors[index].data

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def of_kind(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]


def _module():
    try:
        import tflite  # the flatbuffer schema package of the optional extra
    except ImportError as err:
        raise MissingDependencyError(
            f"reading a TensorFlow Lite file needs the optional extra: {EXTRA_HINT} (the `tflite` parser package). "
            "The core install does not need it; only `kwsbench checkpoints import` of a .tflite source does."
        ) from err
    return tflite


_NUMPY_TYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "FLOAT16": np.float16,
                "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "BOOL": np.bool_, "FLOAT64": np.float64}


def read_graph(path: str | Path) -> Graph:
    """The first subgraph of a .tflite file; a file that is not one is a BadInputError naming it."""
    tflite = _module()
    path = Path(path)
    buf = path.read_bytes()
    if buf[4:8] != b"TFL3":
        raise BadInputError(f"{path} is not a TensorFlow Lite file (no TFL3 identifier)")
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise BadInputError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
    sg = model.Subgraphs(0)
    type_names = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        raw = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        data = None
        if not isinstance(raw, int) and raw.size:  # an empty buffer is returned as the int 0
            dtype = _NUMPY_TYPES.get(type_names[t.Type()])
            if dtype is None:
                raise BadInputError(f"{path}: tensor {i} has unsupported type {type_names[t.Type()]}")
            data = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape).copy()
        tensors.append(Tensor(i, t.Name().decode(), shape, data))
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Files of schema >= 3 keep codes above 127 in BuiltinCode and a placeholder in the deprecated field.
        kind = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ops.append(Op(i, kind, tuple(int(x) for x in op.InputsAsNumpy()), tuple(int(x) for x in op.OutputsAsNumpy())))
    return Graph(tuple(tensors), tuple(ops), tuple(int(x) for x in sg.InputsAsNumpy()),
                 tuple(int(x) for x in sg.OutputsAsNumpy()))

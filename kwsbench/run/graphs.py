"""CUDA-graph replay of a model's inference forward, one captured graph per input shape.

A grid sweeps one model over dozens of conditions with the same two batch shapes (full batches and
the remainder). Small KWS models are launch-bound on a GPU: thousands of tiny kernels per forward,
the GPU idle between them. Capturing the forward once per shape and replaying it removes the launch
cost. A replay runs the kernels captured from the eager forward on the same shapes; each capture is
checked once against the eager forward on the same input and used only when the two are bit-identical,
so replaying never changes a result. A model whose forward a capture refuses (a host sync, a pageable
host copy) or whose replay differs runs eagerly, with the reason kept in `fallback_reason`.

A shape's first batch costs one eager forward (the warm-up the capture needs, and what the replay is checked
against), the capture and one replay, whose output is that batch's logits: on a GPU the eager forward of these
small models is launch-bound, so each eager forward saved is host time the device would idle through.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Eager forwards before a capture: lazy initialisation (cuBLAS / cuDNN handles and workspaces, Triton kernels
# loaded, kernel choice) must happen outside it. The replay is checked against each of them.
WARMUP_FORWARDS = 1


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor


class GraphedForward:
    """Call like the model (inference only). Call `reset()` after anything that rebuilds the model's tensors
    (a sample-rate change), since a graph reads the memory it was captured with."""

    def __init__(self, model: torch.nn.Module, enabled: bool = True) -> None:
        self.model = model
        self.graphs: dict[tuple[int, ...], _Captured] = {}
        self.pool = None  # one memory pool for all shapes of this model
        self.fallback_reason = "" if enabled else "disabled"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fallback_reason or x.device.type != "cuda":
            return self.model(x)
        key = tuple(x.shape)
        captured = self.graphs.get(key)
        if captured is None:
            try:
                captured = self.graphs[key] = self._capture(x)
            except Exception as err:  # noqa: BLE001 - any refusal means: run this model eagerly
                torch.cuda.synchronize()
                self.fallback_reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.reset()
                return self.model(x)
            return captured.static_output.clone()  # the checking replay ran on `x`: these are its logits
        captured.static_input.copy_(x)
        captured.graph.replay()
        return captured.static_output.clone()  # the next replay overwrites the static output

    def reset(self) -> None:
        self.graphs.clear()
        self.pool = None

    def _capture(self, x: torch.Tensor) -> _Captured:
        static_input = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            eager = [self.model(static_input) for _ in range(WARMUP_FORWARDS)]
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_output = self.model(static_input)
        graph.replay()  # a capture only records: replay once to compare with what the eager forward gave
        if not all(torch.equal(static_output, e) for e in eager):
            raise RuntimeError("the replayed graph's logits differ from the eager forward's")
        self.pool = graph.pool()
        return _Captured(graph, static_input, static_output)

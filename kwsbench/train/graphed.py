"""A training step captured in one CUDA graph: forward, loss, backward and optimiser, for a fixed batch shape.

Why: an S-Edge step is thousands of small kernels. Launched one by one from Python the GPU waits for the
CPU (1.9-8.9 steps/s with 20 trainings sharing one H200, whatever the matrix precision); a replayed graph
launches them all at once. This is torch's whole-network capture pattern: a few real steps run eagerly on
a side stream first (lazy optimiser state, library workspaces), then one capture, then each step copies its
batch into the captured input tensors and replays. The optimiser runs with `capturable=True` and each
group's learning rate is a device tensor set in place before the replay, so the schedule is the eager one
(step for step; tests/test_train_graphs.py compares graphed and eager runs on a GPU).

A model opts in by offering `randomness_slots(batch, device)` and `fill_randomness_slots()`: its training
forward must not draw random numbers on the host or synchronise while captured (S-Edge draws its dropout
masks and RZOH holds into device tensors before each replay, from the same generators as an eager step).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# (x, y, loss scale) -> (loss, logits); the body also accumulates its loss and correct count on the device
StepBody = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
WARMUP_STEPS = 3  # eager steps before the capture (torch's example uses 3)


def supports_graphed_step(model: nn.Module) -> bool:
    return hasattr(model, "randomness_slots") and hasattr(model, "fill_randomness_slots")


def make_capturable(opt: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Adam/AdamW with capturable=True, each group's lr a device tensor, step counts on the device."""
    for group in opt.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
    for state in opt.state.values():  # state loaded from a checkpoint (--resume) keeps its steps on the host
        if "step" in state:
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    """lr = peak_lr * factor for every group: in place when lr is a device tensor (read by the graph)."""
    for group in opt.param_groups:
        value = group["peak_lr"] * factor
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def portable_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's state_dict as an eager optimiser saves it (float lr, capturable off, steps on the host),
    so a checkpoint resumes the same way with or without graphs, on any device."""
    sd = opt.state_dict()
    groups = [{**g, "lr": float(g["lr"]), "capturable": False} if "capturable" in g else
              {**g, "lr": float(g["lr"])} for g in sd["param_groups"]]
    state = {k: {**s, "step": s["step"].detach().to("cpu", torch.float32)} if isinstance(s.get("step"), torch.Tensor)
             else s for k, s in sd["state"].items()}
    return {"state": state, "param_groups": groups}


class GraphedStep:
    """Calls `body` eagerly for the first WARMUP_STEPS steps (real steps, on a side stream), then captures it
    once and replays the graph for every later batch of the same shape."""

    def __init__(self, body: StepBody, model: nn.Module, batch: int, clip_shape: tuple[int, ...],
                 device: torch.device | str, scale: float) -> None:
        self.body, self.model, self.scale = body, model, scale
        self.x = torch.zeros(batch, *clip_shape, device=device)
        self.y = torch.zeros(batch, dtype=torch.long, device=device)
        self.stream = torch.cuda.Stream(device=device)
        self.warm_left = WARMUP_STEPS
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None
        self.failed = ""  # why capture failed; the run then stays eager

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on a host batch of the captured shape; the returned tensors are overwritten next step."""
        if self.warm_left > 0 or self.failed:
            self.warm_left -= 1
            return self._eager(x, y)
        if self.graph is None and not self._capture():
            return self._eager(x, y)
        self.x.copy_(x.pin_memory(), non_blocking=True)
        self.y.copy_(y.pin_memory(), non_blocking=True)
        self.model.fill_randomness_slots()
        self.graph.replay()
        return self.out

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = self.body(x.to(self.x.device), y.to(self.y.device), self.scale)
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def _capture(self) -> bool:
        """Capture the body once (nothing runs during a capture: no draw, no step is spent)."""
        graph = torch.cuda.CUDAGraph()
        try:
            with self.model.randomness_slots(self.x.shape[0], self.x.device), torch.cuda.graph(graph):
                out = self.body(self.x, self.y, self.scale)
            # detached: holding the captured autograd graph would keep its gradient-accumulation nodes, bound to
            # the capture stream, alive for the eager steps on another stream (torch warns of a stream mismatch)
            self.out = tuple(t.detach() for t in out)
        except RuntimeError as exc:  # an op that cannot be captured: train on eagerly rather than stop
            self.failed = str(exc).splitlines()[0]
            warnings.warn(f"CUDA graph capture of the training step failed ({self.failed}); training eagerly",
                          RuntimeWarning, stacklevel=2)
            return False
        self.graph = graph
        return True

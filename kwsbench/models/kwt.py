"""Keyword Transformer (KWT-1/-2/-3; Berg, O'Connor, Cruz, Interspeech 2021, arXiv 2104.00769), as the
authors' TensorFlow Lite export of KWT-1 computes it (../shared/reference/kwt.md; ARM-software/keyword-transformer
at 237e4097afd4, models_data_v2_12_labels/kwt1/tflite_non_stream/non_stream.tflite).

Raw audio (B, 16000) at 16 kHz -> 12 logits in kwsbench's v2-12 order (yes … go, silence, unknown); the file's
order is `_silence_, _unknown_, yes, … go`, and conversion reorders the head's rows (nothing else changes).

Front end (`mfcc_tf` of kws_streaming, every step a tensor of the graph):
  frames of 480 samples every 160 (98 frames, no padding) x periodic Hann window
  -> real DFT as two matrix products (cos / -sin rows for bins 0..243 of a 512-point DFT of the 480 samples:
     the bins up to the last one any mel filter touches, `mel_non_zero_only`) -> magnitude sqrt(re² + im²)
  -> 80 mel filters 20-7,600 Hz (TensorFlow's linear_to_mel_weight_matrix: HTK mel 1127 ln(1 + f/700),
     triangles in the mel domain, bin 0 zeroed) -> log(max(., 1e-12)) -> DCT-II to 40: sqrt(2/80) cos(pi/80 (n+½) k)
The graph's feature normaliser is the identity (subtract 0, multiply by 1); conversion checks that and drops it.
These constants are persistent buffers: a converted checkpoint carries the file's own matrices; a fresh build
(KWT-2/-3, or training) makes them by the formulas above, which reproduce the file's to float32 rounding
(max |Δ| 3e-8, tested).

Transformer (`attention_type: time`, one token per frame): Linear 40 -> d on each of the 98 MFCC frames,
a class token prepended, learned position embeddings (99 x d) added; 12 post-norm blocks
x = LN(x + MHSA(x)); x = LN(x + MLP(x)) with LayerNorm eps 1e-6, query/key/value projections without bias,
scores scaled by 1/sqrt(d / heads), MLP d -> mlp -> d with tanh-approximated GELU; the class token's output
-> Linear d -> classes. Dropout 0 (as KWT-1's flags).

Sizes (dim / mlp / heads / depth): KWT-1 64/256/1/12, KWT-2 128/512/2/12, KWT-3 192/768/3/12. The mlp widths
are 4 x dim: flags.json says 256 for KWT-1 (reported.md §2.4's "128" contradicts the file), and the built counts
then equal the published sizes (607,308 = the Keras summary of KWT-1; KWT-2 2,394,252 ~ "2.4 M"; KWT-3
5,360,844, where reported.md gives "5.5 M").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kwsbench.cost import Cost, elementwise_macs, linear_macs
from kwsbench.errors import BadInputError
from kwsbench.models.registry import ModelCard, register

SAMPLE_RATE, CLIP_SAMPLES = 16000, 16000
FRAME, HOP, N_FFT = 480, 160, 512
N_MELS, MEL_LOW_HZ, MEL_HIGH_HZ, LOG_FLOOR, N_MFCC = 80, 20.0, 7600.0, 1e-12, 40
N_FRAMES = 1 + (CLIP_SAMPLES - FRAME) // HOP  # 98
LN_EPS = 1e-6
SOURCE = ("Berg et al., Interspeech 2021, arXiv 2104.00769; ARM-software/keyword-transformer @ 237e4097afd4 "
          "(KWT-1 TFLite export, Apache-2.0)")


@dataclass(frozen=True)
class KwtSize:
    d_model: int
    mlp_dim: int
    heads: int
    layers: int
    params: int  # what this definition builds (tests recount)
    published: str  # as the source states it
    published_params: int  # the same, as a number (rounding kept)


SIZES = {
    1: KwtSize(64, 256, 1, 12, 607_308, "607,308 (Keras summary of the released KWT-1; kwt.md)", 607_308),
    2: KwtSize(128, 512, 2, 12, 2_394_252, "2.4 M (reported.md §2.4)", 2_400_000),
    3: KwtSize(192, 768, 3, 12, 5_360_844, "5.5 M (reported.md §2.4; the built 5.36 M rounds to 5.4 M)",
                 5_500_000),
}


# ---------------------------------------------------------------------------------------------
# front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(f / 700.0)  # TensorFlow's HTK mel


def tf_mel_matrix(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE, low: float = MEL_LOW_HZ,
                  high: float = MEL_HIGH_HZ) -> np.ndarray:
    """(n_fft//2 + 1, n_mels): tf.signal.linear_to_mel_weight_matrix (triangles in the mel domain, bin 0 zero)."""
    bins_mel = _hz_to_mel(np.linspace(0.0, rate / 2, n_fft // 2 + 1)[1:])[:, None]
    edges = np.linspace(_hz_to_mel(np.float64(low)), _hz_to_mel(np.float64(high)), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising, falling = (bins_mel - lower) / (centre - lower), (upper - bins_mel) / (upper - centre)
    return np.pad(np.maximum(0.0, np.minimum(rising, falling)), [(1, 0), (0, 0)])


def mfcc_tf_constants() -> dict[str, torch.Tensor]:
    """The front end's matrices by their formulas (module docstring), float32, in the file's layout."""
    mel = tf_mel_matrix()
    n_bins = int(np.nonzero(mel.any(axis=1))[0].max()) + 1  # mel_non_zero_only: bins 0 .. last touched
    k, n = np.arange(n_bins)[:, None], np.arange(FRAME)[None, :]
    angle = 2 * np.pi * k * n / N_FFT
    kk, nn_ = np.arange(N_MFCC)[:, None], np.arange(N_MELS)[None, :]
    dct = np.sqrt(2.0 / N_MELS) * np.cos(np.pi / N_MELS * (nn_ + 0.5) * kk)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)  # periodic Hann
    arrays = {"window": window, "dft_real": np.cos(angle), "dft_imag": -np.sin(angle), "mel": mel[:n_bins].T,
              "dct": dct}
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}


class MfccTF(nn.Module):
    """(B, 16000) -> (B, 40, 98) MFCC (coefficients x frames, the (F, T) layout training's SpecAugment hook masks),
    every constant a persistent buffer (the checkpoint's, when loaded)."""

    def __init__(self) -> None:
        super().__init__()
        for name, value in mfcc_tf_constants().items():
            self.register_buffer(name, value)

    def stages(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate the TFLite graph names, for stage-by-stage comparison (B, frames, ·)."""
        if audio.shape[-1] != CLIP_SAMPLES:
            raise BadInputError(f"KWT takes 1-s clips of {CLIP_SAMPLES} samples at 16 kHz; got {audio.shape[-1]} "
                                "samples. Pad or crop the clip to one second.")
        frames = audio.float().unfold(-1, FRAME, HOP) * self.window
        real, imag = frames @ self.dft_real.T, frames @ self.dft_imag.T
        magnitude = torch.sqrt(real * real + imag * imag)
        mel = magnitude @ self.mel.T
        log_mel = torch.log(torch.clamp_min(mel, LOG_FLOOR))
        return {"frames": frames, "magnitude": magnitude, "mel": mel, "log_mel": log_mel,
                "mfcc": log_mel @ self.dct.T}

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.stages(audio)["mfcc"].transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# transformer


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % heads:
            raise BadInputError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # Explicit softmax(q kᵀ / sqrt(dh)) v, the graph's order of operations (the fused kernel differs by ~1e-7).
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5, dim=-1)
        weights = F.dropout(weights, self.dropout, self.training)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class PostNormBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = SelfAttention(d_model, heads, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.fc1 = nn.Linear(d_model, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x)))
        hidden = self.dropout(F.gelu(self.fc1(x), approximate="tanh"))
        return self.norm2(x + self.dropout(self.fc2(hidden)))


class KWT(nn.Module):
    """Raw audio (B, 16000) -> logits (B, classes)."""

    def __init__(self, size: int = 1, num_classes: int = 12, dropout: float = 0.0) -> None:
        super().__init__()
        cfg = SIZES[size]
        d = cfg.d_model
        self.frontend = MfccTF()
        self.patch = nn.Linear(N_MFCC, d)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.position = nn.Parameter(torch.zeros(1, N_FRAMES + 1, d))
        self.blocks = nn.ModuleList(PostNormBlock(d, cfg.heads, cfg.mlp_dim, dropout) for _ in range(cfg.layers))
        self.head = nn.Linear(d, num_classes)
        self._init()

    def _init(self) -> None:
        # Keras defaults of the original (glorot-uniform kernels, zero biases); embeddings N(0, 0.02) as in ViT.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.class_token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """The class token's output after the last block, (B, d)."""
        x = self.patch(self.frontend(audio).transpose(1, 2))  # one token per frame
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        return x[:, 0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(audio))


# ---------------------------------------------------------------------------------------------
# conversion of the authors' TFLite file (weights found by their place in the operator graph)

SOURCE_LABELS = ("_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# kwsbench's v2-12 order (kwsbench.data.clipset.LABELS_12): keywords, then silence, unknown
LABELS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "silence", "unknown")
HEAD_ORDER = [*range(2, 12), 0, 1]  # row i of the converted head = row HEAD_ORDER[i] of the file's
GELU_MUL_CONSTANTS = (0.044715, math.sqrt(2 / math.pi), 0.5)  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BadInputError(f"the TFLite graph is not the KWT graph kwsbench converts: {what}")


def _near(value: float, expected: float) -> bool:
    return abs(value - expected) <= 1e-6 * abs(expected) + 1e-12


def _scalar(graph, op, what: str) -> float:
    consts = [graph.const(i) for i in op.inputs if graph.const(i) is not None]
    _check(len(consts) == 1 and consts[0].size == 1, f"{what}: expected one scalar constant in op {op.index}")
    return float(consts[0].reshape(()))


def _consumers(graph, tensor: int) -> list:
    return [op for op in graph.ops if tensor in op.inputs]


def _layer_norm(graph, rsqrt) -> tuple[np.ndarray, np.ndarray]:
    """The graph's LayerNorm: scale = rsqrt(var + eps) * gamma; y = x * scale + (beta - mean * scale)."""
    _check(_near(_scalar(graph, graph.producer(rsqrt.inputs[0]), "LayerNorm epsilon"), LN_EPS),
           "LayerNorm epsilon is not 1e-6")
    scale_op = _consumers(graph, rsqrt.outputs[0])[0]
    gamma = next(graph.const(i) for i in scale_op.inputs if graph.const(i) is not None)
    sub = next(op for m in _consumers(graph, scale_op.outputs[0]) for op in _consumers(graph, m.outputs[0])
               if op.kind == "SUB")
    return gamma, graph.const(sub.inputs[0])


def state_from_tflite(graph) -> tuple[int, dict[str, torch.Tensor]]:
    """(size, state dict of `KWT(size)`) from a parsed KWT TFLite graph (kwsbench.tflite_file.Graph).

    Every weight is taken from the operator that uses it: the constant-weight FULLY_CONNECTED layers in
    execution order are DFT-real, DFT-imaginary, mel, DCT, patch, then per block query, key, value, output,
    MLP-in, MLP-out, then the head (its rows put in kwsbench's label order, `HEAD_ORDER`). Constants kwsbench
    does not store (log floor, LayerNorm epsilon, attention scale, GELU coefficients, the identity feature
    normaliser) are checked against the model's and refused when they differ."""
    fcs = [op for op in graph.of_kind("FULLY_CONNECTED") if graph.const(op.inputs[1]) is not None]
    layers, rest = divmod(len(fcs) - 6, 6)
    _check(rest == 0 and layers > 0, f"{len(fcs)} constant-weight dense layers (expected 6 + 6 per block)")
    w = [graph.const(op.inputs[1]) for op in fcs]
    b = [graph.const(op.inputs[2]) if op.inputs[2:] and op.inputs[2] >= 0 else None for op in fcs]
    d, mlp = w[4].shape[0], w[9].shape[0]
    # attention: scores = FULLY_CONNECTED(query, keys) of activations, then MUL by the scale
    scales = []
    for i in range(layers):
        query = fcs[5 + 6 * i].outputs[0]
        scores = [op for op in _consumers(graph, query) if op.kind == "FULLY_CONNECTED" and op.inputs[0] == query]
        _check(len(scores) == 1, f"block {i}: the query feeds no score product")
        scales.append(_scalar(graph, _consumers(graph, scores[0].outputs[0])[0], "attention scale"))
    heads = round(d * scales[0] ** 2)
    size = next((k for k, s in SIZES.items() if (s.d_model, s.mlp_dim, s.heads, s.layers) == (d, mlp, heads, layers)),
                None)
    _check(size is not None, f"dim {d}, mlp {mlp}, {heads} head(s), {layers} blocks match no KWT size")
    _check(all(_near(x, (d // heads) ** -0.5) for x in scales), "attention scale is not 1/sqrt(d / heads)")
    _check(len(graph.of_kind("LOG")) == 1 and len(graph.of_kind("SQRT")) == 1, "one SQRT (magnitude) and one LOG")
    _check(_near(_scalar(graph, graph.of_kind("MAXIMUM")[0], "log floor"), LOG_FLOOR), "log floor is not 1e-12")
    _check(len(graph.of_kind("TANH")) == layers and all(_near(_scalar(graph, op, "GELU power"), 3.0)
                                                      for op in graph.of_kind("POW")), "tanh-GELU per block")
    for op in graph.of_kind("TANH"):  # tanh(c * u): c = sqrt(2/pi); and u = x + 0.044715 x³
        _check(_near(_scalar(graph, graph.producer(op.inputs[0]), "GELU"), GELU_MUL_CONSTANTS[1]), "GELU sqrt(2/pi)")
    front = graph.ops[:graph.ops.index(fcs[4])]  # everything before the patch projection
    normaliser = [graph.const(i) for op in front if op.kind in ("SUB", "MUL") for i in op.inputs
                  if graph.const(i) is not None and graph.const(i).shape != (FRAME,)]
    _check(len(normaliser) == 2 and not normaliser[0].any() and np.all(normaliser[1] == 1),
           "the feature normaliser is not the identity (mean 0, scale 1)")
    window = next(graph.const(i) for op in front if op.kind == "MUL" for i in op.inputs
                  if graph.const(i) is not None and graph.const(i).shape == (FRAME,))
    concat = graph.of_kind("CONCATENATION")[0]
    class_token = next(graph.const(i) for i in concat.inputs if graph.const(i) is not None)
    add = next(op for op in _consumers(graph, concat.outputs[0]) if op.kind == "ADD")
    position = next(graph.const(i) for i in add.inputs if graph.const(i) is not None)
    rsqrts = graph.of_kind("RSQRT")
    _check(len(rsqrts) == 2 * layers, f"{len(rsqrts)} LayerNorms for {layers} blocks")
    state = {"frontend.window": window, "frontend.dft_real": w[0], "frontend.dft_imag": w[1], "frontend.mel": w[2],
             "frontend.dct": w[3], "patch.weight": w[4], "patch.bias": b[4], "class_token": class_token,
             "position": position, "head.weight": w[-1][HEAD_ORDER], "head.bias": b[-1][HEAD_ORDER]}
    for i in range(layers):
        k = 5 + 6 * i
        _check(all(x is None for x in b[k:k + 3]), f"block {i}: query/key/value have a bias")
        (g1, b1), (g2, b2) = _layer_norm(graph, rsqrts[2 * i]), _layer_norm(graph, rsqrts[2 * i + 1])
        pre = f"blocks.{i}."
        state |= {pre + "attention.query.weight": w[k], pre + "attention.key.weight": w[k + 1],
                  pre + "attention.value.weight": w[k + 2], pre + "attention.out.weight": w[k + 3],
                  pre + "attention.out.bias": b[k + 3], pre + "norm1.weight": g1, pre + "norm1.bias": b1,
                  pre + "fc1.weight": w[k + 4], pre + "fc1.bias": b[k + 4], pre + "fc2.weight": w[k + 5],
                  pre + "fc2.bias": b[k + 5], pre + "norm2.weight": g2, pre + "norm2.bias": b2}
    _check(all(v is not None for v in state.values()), "a weight or bias is not a constant")
    return size, {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


def convert_tflite(source: str | Path, provenance: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of the kwsbench checkpoint made from the KWT TFLite file `source`: the state dict
    loads strictly into the matching card's module; the metadata carries `provenance`, the labels and what was
    converted. (kwsbench.checkpoints writes the file.)"""
    from kwsbench.tflite_file import read_graph

    size, state = state_from_tflite(read_graph(source))
    KWT(size).load_state_dict(state, strict=True)  # the card's module takes it as it is
    metadata = {"model": f"kwt-{size}", "labels": list(LABELS), "source_labels": list(SOURCE_LABELS),
                "converted_by": "kwsbench.models.kwt.convert_tflite",
                "conversion": "weights by their place in the operator graph; front-end matrices (window, DFT, mel, "
                              "DCT) stored as buffers; head rows reordered from the file's label order "
                              "(source_labels) to kwsbench's (labels); constants checked: log floor 1e-12, "
                              "LayerNorm eps 1e-6, attention scale, tanh-GELU, identity normaliser", **provenance}
    return state, metadata


# ---------------------------------------------------------------------------------------------
# cost


def frontend_macs() -> int:
    """The graph's front end as it computes it: window, two dense DFT products, |X| (2 per bin), dense mel, DCT."""
    bins = mfcc_tf_constants()["mel"].shape[1]
    per_frame = FRAME + 2 * bins * FRAME + 2 * bins + N_MELS * bins + N_MELS * N_MFCC
    return N_FRAMES * per_frame


def transformer_macs(d: int, mlp: int, heads: int, layers: int, tokens: int, classes: int) -> int:
    """Dense layers, attention products, softmax normalisation, residuals, LayerNorm and GELU arithmetic."""
    attention = (linear_macs(d, d, 4 * tokens)  # q, k, v, out
                 + 2 * heads * tokens * tokens * (d // heads)  # q kᵀ and weights · v
                 + elementwise_macs(heads * tokens * tokens, 2))  # scale, softmax division (exp not counted)
    mlp_macs = linear_macs(d, mlp, tokens) + linear_macs(mlp, d, tokens) + elementwise_macs(mlp * tokens, 6)
    norms_and_residuals = elementwise_macs(d * tokens, 2 * 4 + 2)  # 2 LayerNorms (mean, var, scale, shift), 2 adds
    return layers * (attention + mlp_macs + norms_and_residuals) + linear_macs(d, classes)


def kwt_cost(card: ModelCard, rate: int) -> Cost:
    """KWT runs at 16 kHz only (fixed 480/160 framing, 99 learned positions): another rate runs band-limited."""
    cfg = SIZES[card.kwargs["size"]]
    model = card.build()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tokens = N_FRAMES + 1
    body = linear_macs(N_MFCC, cfg.d_model, N_FRAMES) + elementwise_macs(cfg.d_model * tokens) \
        + transformer_macs(cfg.d_model, cfg.mlp_dim, cfg.heads, cfg.layers, tokens, card.num_classes)
    note = ("" if rate == card.native_rate
            else f"; cannot change rate: at {rate} Hz input it runs band-limited at 16 kHz")
    return Cost(
        model=card.name, rate=rate, trainable_params=params, inference_params=params,
        folded="nothing folded (LayerNorm normalises per token; front-end matrices are constants, not parameters)",
        frontend_macs=frontend_macs(), body_macs=body,
        notes=f"{tokens} tokens x d={cfg.d_model}; front end as the TFLite graph computes it (dense DFT and mel "
              "matrices); GELU as 6 MACs per element, softmax as scale + division (exp, tanh, sqrt not counted)"
              + note,
    )


for _size, _cfg in SIZES.items():
    register(ModelCard(
        name=f"kwt-{_size}", family="kwt", builder=KWT, kwargs={"size": _size}, input="mfcc-tf-40",
        native_rate=SAMPLE_RATE, protocol="v2-12", num_classes=12, can_change_rate=False, can_stream=False,
        cost=kwt_cost, checkpoint="kwt:KWT-1/kwt-1.pt" if _size == 1 else None,
        published_params=_cfg.published_params, recipe="kwt",
        description=(f"Keyword Transformer KWT-{_size}: dim {_cfg.d_model}, mlp {_cfg.mlp_dim}, {_cfg.heads} head(s), "
                     f"{_cfg.layers} post-norm layers on 98 MFCC frames; published {_cfg.published}; "
                     + ("weights: the authors' TFLite file, converted (front-end matrices read from it)"
                        if _size == 1 else "architecture only (no public weights in reach); front-end matrices "
                        "built by the documented formulas")),
        source=SOURCE,
    ))

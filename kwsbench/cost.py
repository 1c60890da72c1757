"""Parameters and MACs, counted analytically per primitive (hook counters miss scans, complex and FFT ops).

Conventions (kept everywhere in this module):
- 1 MAC = one real multiply plus one accumulate. FLOPs = 2 x MACs.
- Bias adds are not counted (the usual Linear/Conv convention). A stand-alone element-wise add or
  multiply (residual add, running-mean accumulation, gating) counts 1 MAC per element.
- Complex arithmetic in real MACs: complex x complex multiply = 4 real MACs (no Gauss trick);
  complex x real = 2; Re(complex x complex) = 2 (only the two products that land in the real part).
- Transcendental functions (exp, log, pow, sqrt, sigmoid, tanh, softplus) are not MACs.
- A radix-2 complex FFT of size n costs 2 n log2(n) real MACs (n/2 log2 n butterflies, one complex
  twiddle multiply = 4 MACs each); a real-input FFT (rfft / irfft) costs half, n log2(n).
- Complex parameters count as 2 real parameters.
Functions return integers (MACs for the whole call); per-second and per-sample figures are derived.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kwsbench.aliases import callable_as_api
from kwsbench.errors import BadInputError

# ------------------------------------------------------------------------------------------------
# Record


@dataclass
class Cost:
    """Cost of one model at one input rate (1-s clip = `rate` samples)."""

    model: str
    rate: int
    trainable_params: int  # as built in torch, complex counted x2
    inference_params: int  # after folding (see `folded`)
    folded: str  # what folding removed or merged
    frontend_macs: int  # per 1-s clip
    body_macs: int  # per 1-s clip
    streaming_macs_per_s: int | None = None  # per second of audio in step() mode
    state_size: int | None = None  # real values held between steps
    published: dict[str, float] = field(default_factory=dict)  # the source's own method, labelled
    notes: str = ""

    @property
    def total_macs(self) -> int:
        return self.frontend_macs + self.body_macs

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_macs": self.total_macs}


def model_cost(card: Any, rate: int) -> Cost:
    """Cost record of a registered model at `rate` Hz, from the card's own cost function."""
    if card.cost is None:
        raise BadInputError(f"model {card.name!r} has no cost function on its card; nothing to count")
    return card.cost(card, rate)


# ------------------------------------------------------------------------------------------------
# Primitives


def linear_macs(in_features: int, out_features: int, positions: int = 1) -> int:
    """Dense layer applied at `positions` time steps / tokens; bias adds not counted."""
    return in_features * out_features * positions


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_macs(in_channels: int, out_channels: int, kernel_size: int | Sequence[int], input_size: int | Sequence[int],
              stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
              dilation: int | Sequence[int] = 1, groups: int = 1) -> int:
    """N-d convolution (1-d and 2-d alike): (C_in/groups) * prod(kernel) * C_out * prod(output size)."""
    dims = max(1 if isinstance(v, int) else len(v) for v in (kernel_size, input_size, stride, padding, dilation))
    k, n, s, p, d = (_tuple(v, dims) for v in (kernel_size, input_size, stride, padding, dilation))
    if in_channels % groups or out_channels % groups:
        raise BadInputError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
    out = math.prod(conv_output_size(*a) for a in zip(n, k, s, p, d, strict=True))
    return (in_channels // groups) * math.prod(k) * out_channels * out


def fft_macs(n: int, real_input: bool = False) -> int:
    """Radix-2 FFT of size n (n rounded up to a power of two): 2 n log2 n, halved for real input."""
    n2 = 1 << max(0, math.ceil(math.log2(n)))
    full = 2 * n2 * int(math.log2(n2)) if n2 > 1 else 0
    return full // 2 if real_input else full


def stft_macs(n_samples: int, n_fft: int, hop: int, win_length: int | None = None, center: bool = True,
              magnitude: bool = True) -> int:
    """Framed real FFT: window multiply + rfft per frame (+ |X|² as 2 MACs per bin; sqrt not counted)."""
    win = n_fft if win_length is None else win_length
    frames = stft_frames(n_samples, n_fft, hop, center)
    bins = n_fft // 2 + 1
    return frames * (win + fft_macs(n_fft, real_input=True) + (2 * bins if magnitude else 0))


def stft_frames(n_samples: int, n_fft: int, hop: int, center: bool = True) -> int:
    padded = n_samples + (2 * (n_fft // 2) if center else 0)
    return 1 + (padded - n_fft) // hop


def mel_macs(n_freq: int, n_mels: int, frames: int, nonzero: int | None = None) -> int:
    """Mel projection: dense n_freq x n_mels per frame, or `nonzero` filter weights if sparse."""
    per_frame = n_freq * n_mels if nonzero is None else nonzero
    return per_frame * frames


def pcen_macs(n_bands: int, frames: int) -> int:
    """PCEN per band and frame: smoother (1-s)M + s m (2), m * G (1), + delta (1), - delta^r (1) = 5.

    The powers (M+eps)^-alpha and (.)^r are transcendental and not counted.
    """
    return 5 * n_bands * frames


def diag_ssm_macs(n_state: int, h_in: int, h_out: int, update_steps: int, output_steps: int | None = None,
                  complex_state: bool = True) -> int:
    """Diagonal SSM recurrence x <- λ̄ x + B̄ u (+ b̄), y = Re(C x) (+ c).

    Complex state: λ̄ ⊙ x = 4 real MACs per state (complex multiply), B̄ u = 2 per entry (complex x
    real), Re(C x) = 2 per entry. Real state: 1 per state/entry. Bias adds not counted. The read-out runs
    `output_steps` times (default: every update) - in streaming, only when the next layer consumes it.
    """
    k = 2 if complex_state else 1
    update = (2 * k - (0 if complex_state else 1)) * n_state + k * h_in * n_state
    output = k * n_state * h_out
    return update * update_steps + output * (update_steps if output_steps is None else output_steps)


def selective_scan_macs(d_inner: int, d_state: int, steps: int, d_skip: bool = True) -> int:
    """Input-dependent (Mamba-style) diagonal scan per step and channel e, state n:
    Δ⊙A (1, exp not counted) + Δ·u (1 per e) + (Δu)·B (1) + Ā h + ... (1) + C·h (1) = 4 E N + E,
    plus D u (E) when there is a D skip.
    """
    per_step = 4 * d_inner * d_state + d_inner + (d_inner if d_skip else 0)
    return per_step * steps


def fft_conv_macs(channels: int, length: int, kernel_length: int, kernel_precomputed: bool = True) -> int:
    """Causal long convolution by real FFT of size n >= length + kernel_length - 1 per channel:
    rfft(input) + pointwise complex product over n/2+1 bins (4 each) + irfft (+ rfft(kernel) if not cached).
    """
    n = 1 << math.ceil(math.log2(length + kernel_length - 1))
    ffts = 2 if kernel_precomputed else 3
    return channels * (ffts * fft_macs(n, real_input=True) + 4 * (n // 2 + 1))


def elementwise_macs(n_elements: int, ops_per_element: int = 1) -> int:
    """Adds / multiplies counted one MAC each (residuals, gates, means, normalisation affine)."""
    return n_elements * ops_per_element


def _tuple(v: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return (v,) * dims if isinstance(v, int) else tuple(v)


# ------------------------------------------------------------------------------------------------
# S-Edge


@dataclass(frozen=True)
class SEdgeLayerShape:
    h_in: int
    n_state: int
    h_out: int
    trainable_skip: bool


def sedge_layer_shapes(model: Any) -> list[SEdgeLayerShape]:
    """Per-layer shapes read from a built S-Edge model (no name matching: its layer attributes)."""
    return [SEdgeLayerShape(m.h_in, m.n_state, m.h_out, m.skip is not None) for m in model.layers]


def _sedge_update(layer: SEdgeLayerShape) -> int:
    return diag_ssm_macs(layer.n_state, layer.h_in, 0, 1)


def _sedge_output(layer: SEdgeLayerShape) -> int:
    skip = linear_macs(layer.h_in, layer.h_out) if layer.trainable_skip else elementwise_macs(layer.h_out)
    return diag_ssm_macs(layer.n_state, 0, layer.h_out, 0, 1) + skip


def sedge_repo_params(layers: Sequence[SEdgeLayerShape], num_classes: int = 35) -> int:
    """The S-Edge repository's parameter formula (reference 5.1): no log_step, no BN affine, +2 input BN."""
    total = 0
    for ly in layers:
        total += 2 * ly.n_state + 2 * ly.h_in * ly.n_state + 2 * ly.n_state + 2 * ly.n_state * ly.h_out
        total += 2 * ly.h_out + (ly.h_in * ly.h_out if ly.trainable_skip else 0)
    return total + layers[-1].h_out * num_classes + num_classes + 2


def sedge_repo_macs_per_sample(layers: Sequence[SEdgeLayerShape], chain: Sequence[float],
                               num_classes: int = 35) -> float:
    """Repository formula (reference 5.1): MACs per 16 kHz input sample; read-out at each layer's own rate."""
    total = sum((_sedge_update(ly) + _sedge_output(ly)) / s for ly, s in zip(layers, chain, strict=True))
    h_last = layers[-1].h_out
    return total + h_last / chain[-1] + h_last * num_classes / 16000 + 1


def sedge_streaming_macs_per_sample(layers: Sequence[SEdgeLayerShape], chain: Sequence[float],
                                    num_classes: int = 35) -> float:
    """Streaming formula (reference 5.3, the C++ engine): read-out at the next layer's rate."""
    nxt = [*chain[1:], chain[-1]]
    total = sum(_sedge_update(ly) / s + _sedge_output(ly) / s2
                for ly, s, s2 in zip(layers, chain, nxt, strict=True))
    h_last = layers[-1].h_out
    return total + h_last / chain[-1] + h_last * num_classes / 16000


_SHAPES: dict[str, tuple[list[SEdgeLayerShape], int, int, int]] = {}


def _sedge_shapes(card: Any) -> tuple[list[SEdgeLayerShape], int, int, int]:
    """Build once per card: layer shapes, trainable params, log_step count, BN affine count."""
    key = f"{card.name}:{sorted(card.kwargs.items())!r}"
    if key not in _SHAPES:
        _SHAPES[key] = _measure_sedge(card.build())
    return _SHAPES[key]


def _measure_sedge(model: Any) -> tuple[list[SEdgeLayerShape], int, int, int]:
    layers = sedge_layer_shapes(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bn_affine = sum(2 * m.h_in for m in model.layers if m.norm is not None)
    return layers, trainable, sum(ly.n_state for ly in layers), bn_affine


def sedge_cost(card: Any, rate: int, chain: Sequence[int] | None = None) -> Cost:
    """S-Edge at `rate` (native: uniform step scale 16000/rate) or an explicit layer-wise chain."""
    if 16000 % rate:
        raise BadInputError(f"S-Edge runs at 16000 / k Hz; {rate} Hz does not divide 16000")
    layers, trainable, log_steps, bn_affine = _sedge_shapes(card)
    scale = 16000 // rate
    chain = list(chain) if chain is not None else [scale] * len(layers)
    classes = card.num_classes
    steps = [math.ceil(16000 / s) for s in chain]  # steps per 1-s clip at each layer
    nxt = [*steps[1:], steps[-1]]
    body = sum(_sedge_update(ly) * n + _sedge_output(ly) * n for ly, n in zip(layers, steps, strict=True))
    body += elementwise_macs(layers[-1].h_out, steps[-1]) + linear_macs(layers[-1].h_out, classes)
    stream = sum(_sedge_update(ly) * n + _sedge_output(ly) * n2
                 for ly, n, n2 in zip(layers, steps, nxt, strict=True))
    stream += elementwise_macs(layers[-1].h_out, steps[-1]) + linear_macs(layers[-1].h_out, classes)
    published = {
        "repo_params": sedge_repo_params(layers, classes),
        "repo_macs_per_sample": round(sedge_repo_macs_per_sample(layers, chain, classes), 2),
        "streaming_macs_per_sample": round(sedge_streaming_macs_per_sample(layers, chain, classes), 2),
    }
    return Cost(
        model=card.name, rate=rate, trainable_params=trainable,
        inference_params=trainable - log_steps - bn_affine,
        folded="Δ (log_step) into λ̄, B̄, b̄ (ZOH)" + ("; BatchNorm pre-norm into B̄ and b̄" if bn_affine else ""),
        frontend_macs=0, body_macs=body, streaming_macs_per_s=stream,
        state_size=sum(2 * ly.n_state for ly in layers) + layers[-1].h_out,
        published=published,
        notes=f"chain {chain}; raw audio, no front end; state = complex SSM states + running mean",
    )


# ------------------------------------------------------------------------------------------------
# NC-SSM (NanoMamba NC family): canonical count and the repository's profile_model method


@dataclass(frozen=True)
class NcssmDims:
    d_model: int
    d_state: int
    n_layers: int = 2
    n_mels: int = 40
    n_classes: int = 12

    @property
    def d_inner(self) -> int:
        return int(1.5 * self.d_model)


def ncssm_dims(model_or_dims: Any) -> NcssmDims:
    """Dimensions from an NC-SSM module (its state-dict shapes), a card, a mapping or NcssmDims."""
    if isinstance(model_or_dims, NcssmDims):
        return model_or_dims
    if hasattr(model_or_dims, "state_dict"):
        sd = model_or_dims.state_dict()
        d_model, n_mels = sd["patch_proj.weight"].shape
        d_state = sd["blocks.0.sa_ssm.A_log"].shape[1]
        n_layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        return NcssmDims(d_model, d_state, n_layers, n_mels, sd["classifier.weight"].shape[0])
    kw = model_or_dims.kwargs if hasattr(model_or_dims, "kwargs") else model_or_dims
    if isinstance(kw, Mapping) and "d_model" in kw and "d_state" in kw:
        return NcssmDims(int(kw["d_model"]), int(kw["d_state"]), int(kw.get("n_layers", 2)))
    raise BadInputError("ncssm_cost needs an NC-SSM module, its card, or a mapping with d_model and d_state")


def ncssm_published_macs(dims: NcssmDims, frames: int = 97) -> dict[str, int]:
    """nanomamba.profile_model as described in nc-ssm.md §11 (T = 97, element-wise ops counted as MACs)."""
    t, d, n, e, m, f = frames, dims.d_model, dims.d_state, dims.d_inner, dims.n_mels, 257
    stft = t * (256 * 9 + 512 + 3 * f)
    snr = 5 * f + 2 * f * t + m * f * t + 4 * m * t + 3 * m * t
    mel, lsg = m * f * t, 7 * m * t
    pcen = 2 * 9 * m * t + 6 * m * t + 4 * t + 2 * m * t
    inorm, patch = 3 * m * t, t * m * d
    block = (3 * t * d + t * d * 2 * e + t * e * 3 + 2 * t * e + t * e * (2 * n + 1) + t * m * (n + 1)
             + 2 * m * t + 6 * t * n + 4 * t * n + 3 * t + 2 * t * e * n + 4 * t * e * n + 3 * t * e
             + t * e * d + t * d)
    head = 3 * t * d + t * d + dims.n_classes * d
    pre = stft + snr + mel + lsg + pcen + inorm
    model = patch + dims.n_layers * block + head
    return {"published_frontend_macs": pre, "published_body_macs": model, "published_total_macs": pre + model}


def ncssm_cost(model_or_dims: Any, rate: int = 16000, name: str = "nc-ssm") -> Cost:
    """Canonical count of the NC-SSM pipeline at `rate` (STFT window/hop scaled with the rate, 101 frames),
    plus the repository's own method, labelled `published_*` (only defined at 16 kHz).
    """
    dims = ncssm_dims(model_or_dims)
    d, n, e, m = dims.d_model, dims.d_state, dims.d_inner, dims.n_mels
    n_fft, hop = 512 * rate // 16000, 160 * rate // 16000
    f = n_fft // 2 + 1
    t = stft_frames(rate, n_fft, hop, center=True)
    front = stft_macs(rate, n_fft, hop, n_fft)
    front += elementwise_macs(f * t, 4) + mel_macs(f, m, t)  # SNR: EMA (2), scale+divide (2), mel of SNR
    front += mel_macs(f, m, t) + elementwise_macs(m * t, 3)  # mel; spectral gate (w s + b, mix, multiply)
    front += 2 * pcen_macs(m, t) + elementwise_macs(m * t, 2 + 4)  # two experts; router sums; expert mix
    front += elementwise_macs(m * t, 4)  # instance norm: mean, variance, subtract, scale
    body = linear_macs(m, d, t)
    per_block = (elementwise_macs(d * t, 4) + linear_macs(d, 2 * e, t)
                 + conv_macs(e, e, 3, t + 2, groups=e) + elementwise_macs(e * t)  # SiLU's x * sigmoid(x)
                 + linear_macs(e, 2 * n + 1, t) + linear_macs(m, n + 1, t)  # x_proj, snr_proj
                 + elementwise_macs(m * t) + elementwise_macs(n * t, 10)  # sub-band pool; gates, blends
                 + linear_macs(1, e, t)  # dt_proj
                 + selective_scan_macs(e, n, t) + elementwise_macs(e * t)  # scan (+D); eps * u
                 + elementwise_macs(e * t, 2) + linear_macs(e, d, t) + elementwise_macs(d * t))  # gate, out, res
    body += dims.n_layers * per_block + elementwise_macs(d * t, 5) + linear_macs(d, dims.n_classes)
    published = ncssm_published_macs(dims) if rate == 16000 else {}
    params = (457 + 55 * d + 2 * (2 * d + 3 * e * d + 4 * e + (3 * n + 4) * e + 46 * n + 47)
              if dims.n_layers == 2 and m == 40 else None)
    return Cost(
        model=name, rate=rate, trainable_params=params or 0, inference_params=params or 0,
        folded="nothing folded (input-dependent scan; LayerNorm stays)",
        frontend_macs=front, body_macs=body, streaming_macs_per_s=None, state_size=None,
        published=published,
        notes=(f"canonical: T={t} frames (center=True), n_fft={n_fft}, hop={hop}; published method: "
               "T=97, element-wise ops and STFT counted by profile_model (nc-ssm.md §11)"),
    )


# ------------------------------------------------------------------------------------------------
# Convolutional models on a spectral front end (DS-CNN, BC-ResNet): composed from the built module's shapes


def frontend_macs(frontend: Any, rate: int) -> int:
    """STFT + mel (+ DCT for MFCC) of a 1-s clip, from the front end's own window, hop and band counts."""
    from kwsbench.features import MFCC, LogMel

    if isinstance(frontend, LogMel):
        frames = stft_frames(rate, frontend.n_fft, frontend.hop_length, frontend.center)
        return (stft_macs(rate, frontend.n_fft, frontend.hop_length, frontend.win_length, frontend.center)
                + mel_macs(frontend.n_fft // 2 + 1, frontend.n_mels, frames))
    if isinstance(frontend, MFCC):
        frames = 1 + (rate - frontend.win) // frontend.hop
        bins = frontend.n_fft // 2 + 1
        n_mels, n_mfcc = frontend.dct.shape
        return (frames * (frontend.win + fft_macs(frontend.n_fft, real_input=True) + 2 * bins)
                + mel_macs(bins, n_mels, frames) + linear_macs(n_mels, n_mfcc, frames))
    raise BadInputError(f"no MAC count for front end {type(frontend).__name__}")


def conv_body_macs(model: Any, rate: int) -> int:
    """Conv and Linear MACs of one forward pass on a 1-s clip. A forward hook only reads each layer's actual
    output shape (padding and pooling happen between layers, or inside a module's own forward); MACs are
    the `conv_macs` formula per output position.
    Element-wise work (BatchNorm folds away, ReLU, residual adds) is counted separately by the caller."""
    import torch
    from torch import nn

    total = 0

    def hook(module: nn.Module, inputs: tuple, out: Any) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += linear_macs(module.in_features, module.out_features, inputs[0].numel() // module.in_features)
        else:
            # From the output size: a module may pad inside its own forward (TF 'SAME' convolutions).
            positions = math.prod(out.shape[2:])
            total += (module.in_channels // module.groups) * math.prod(module.kernel_size) * module.out_channels \
                * positions

    layers = (nn.Conv1d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)
               and m is not getattr(model, "frontend", None)]
    try:
        # autograd on: the convolutional cards' CPU inference path (no autograd) calls the layers' functions
        # without their modules, so no hook would fire; one clip's graph costs nothing here
        with torch.enable_grad():
            model(torch.zeros(1, rate))
    finally:
        for h in handles:
            h.remove()
    return total


def conv_net_cost(card: Any, rate: int) -> Cost:
    """Cost of a conv/linear classifier on a spectral front end (`model.frontend`) at `rate`."""
    from torch import nn

    model = card.build().eval()
    run_rate = _run_rate(card, rate)
    if run_rate != card.native_rate:
        model.set_sample_rate(run_rate)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bn_affine = sum(2 * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d))
    return Cost(
        model=card.name, rate=rate, trainable_params=params, inference_params=params - bn_affine,
        folded="BatchNorm folded into the preceding convolution (scale and shift merged)",
        frontend_macs=frontend_macs(model.frontend, run_rate), body_macs=conv_body_macs(model, run_rate),
        notes="conv/linear MACs from the layers' own shapes; ReLU, pooling and residual adds not counted"
              + _rate_note(card, rate),
    )


def _run_rate(card: Any, rate: int) -> int:
    """A model that cannot change rate always runs at its native rate (bandlimit mode): same cost."""
    return rate if card.can_change_rate else card.native_rate


def _rate_note(card: Any, rate: int) -> str:
    if _run_rate(card, rate) == rate:
        return ""
    return f"; cannot change rate: at {rate} Hz input it runs band-limited at {card.native_rate} Hz"


def ncssm_card_cost(card: Any, rate: int) -> Cost:
    """Card adapter: the NC-SSM family's dimensions come from the built module's shapes."""
    cost = ncssm_cost(card.build(), _run_rate(card, rate), name=card.name)
    cost.rate, cost.notes = rate, cost.notes + _rate_note(card, rate)
    return cost


def nanomamba_card_cost(card: Any, rate: int) -> Cost:
    """NanoMamba v1 (SA-SSM v1): STFT 512/160, static SNR (mel of |X| / noise), log-mel + instance norm, then
    `L` blocks of LayerNorm, in_proj, causal depthwise conv, SiLU, SA-SSM selective scan, gate, out_proj.
    Dimensions are read from the built module (patch projection, A_log (E, N), number of blocks)."""
    model = card.build()
    d, m = model.patch_proj.out_features, model.patch_proj.in_features
    e, n = model.blocks[0].sa_ssm.A_log.shape
    t = stft_frames(card.native_rate, 512, 160, center=True)
    f = 512 // 2 + 1
    front = stft_macs(card.native_rate, 512, 160, 512)
    front += elementwise_macs(f * t, 2) + mel_macs(f, m, t)  # SNR: scale and divide by the noise; its mel
    front += mel_macs(f, m, t) + elementwise_macs(m * t, 4)  # log-mel; instance norm
    per_block = (elementwise_macs(d * t, 4) + linear_macs(d, 2 * e, t)  # LayerNorm, in_proj
                 + conv_macs(e, e, 3, t + 2, groups=e) + elementwise_macs(e * t)  # causal depthwise conv, SiLU
                 + linear_macs(e, 2 * n + 1, t) + linear_macs(m, n + 1, t) + linear_macs(1, e, t)  # x/snr/dt proj
                 + elementwise_macs(n * t, 3)  # B gate: (1 - a) + a * sigmoid, times B
                 + selective_scan_macs(e, n, t) + elementwise_macs(e * t, 2)  # scan (+ D u); z gate
                 + linear_macs(e, d, t) + elementwise_macs(d * t))  # out_proj, residual
    body = linear_macs(m, d, t) + len(model.blocks) * per_block + elementwise_macs(d * t, 5) \
        + linear_macs(d, card.num_classes)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Cost(
        model=card.name, rate=rate, trainable_params=params, inference_params=params,
        folded="nothing folded (input-dependent scan; LayerNorm stays)",
        frontend_macs=front, body_macs=body,
        notes=f"canonical count, T={t} frames (center=True)" + _rate_note(card, rate),
    )


callable_as_api(__name__)  # kwsbench.cost(...) = kwsbench.api.cost(...) (see kwsbench.aliases)

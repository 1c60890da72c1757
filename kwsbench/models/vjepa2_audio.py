"""`vjepa2-audio-kws`: a V-JEPA 2-style audio classifier of keyword-spotting size (the seed system of
audio-classifier-v2, issue 21): a ViT encoder on log-mel tubelet tokens with an attentive-pooling head.
No public weights; `kwsbench train` trains it (recipe `kwt`, the transformer recipe of kwt.md).

Tubelet. The seed system describes its tubelet as [1, 19, 128, 8]: one channel, 19 frames x 128 mel bins per
token, 8 tokens along time. On a 1-s clip kwsbench keeps that token shape and count: the log-mel hop is
105 samples (6.6 ms) so that 8 x 19 = 152 frames span the second (1 + 16000 // 105 = 153 centred frames;
the last is dropped). Each token covers the whole band (non-square: 19 x 128), so the sequence is 8 tokens.

Front end: |STFT|² of a 400-sample (25 ms) periodic Hann window (n_fft 400, centred, reflect padding), 128
Slaney mel bands 0-8 kHz (area-normalised; on 201 FFT bins the HTK scale would leave 4 bands empty), ln(. + 1e-6),
then each clip normalised to zero mean and unit variance over its whole
spectrogram (per clip, so a prediction never depends on the rest of the batch).
Encoder (V-JEPA 2's ViT, pre-norm): Linear 2432 -> d per token, fixed 1-D sine-cosine positions,
`depth` blocks x + MHSA(LN(x)); x + MLP(LN(x)) (exact GELU, qkv with bias), final LayerNorm.
Head (V-JEPA 2's attentive probe): one learned query cross-attends to the tokens (q + xattn(LN(q), LN(x)),
then + MLP(LN(.))), Linear d -> classes.
Widths: d 80, depth 4, 4 heads, MLP 320: 585,212 parameters, comparable with KWT-1's 607,308.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kwsbench.cost import Cost, elementwise_macs, linear_macs, mel_macs, stft_frames, stft_macs
from kwsbench.features import LogMel
from kwsbench.models.registry import ModelCard, register

TOKEN_FRAMES, N_MELS, N_TOKENS = 19, 128, 8
FRAMES = TOKEN_FRAMES * N_TOKENS  # 152 frames per 1-s clip
N_FFT, HOP = 400, 105  # 25 ms window; 16000 / 152 = 105.3 samples per frame
SIZE = {"d_model": 80, "depth": 4, "heads": 4, "mlp_dim": 320}
PARAMS = 585_212  # what SIZE builds (tests recount)


def sincos_positions(tokens: int, d: int) -> torch.Tensor:
    """(1, tokens, d) fixed 1-D sine-cosine positions (the ViT / V-JEPA 2 formula, base 10000)."""
    pos = torch.arange(tokens, dtype=torch.float64)[:, None]
    freq = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1).float()[None]


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, tq, d = query.shape
        h = self.heads
        q = self.q(query).reshape(b, tq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, tq, d))


class Mlp(nn.Sequential):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))


class PreNormBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d, heads)
        self.norm2, self.mlp = nn.LayerNorm(d), Mlp(d, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.mlp(self.norm2(x))


class AttentivePooler(nn.Module):
    """One learned query cross-attending to the encoder's tokens, then an MLP (V-JEPA 2's attentive probe)."""

    def __init__(self, d: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        self.norm_q, self.norm_x, self.attn = nn.LayerNorm(d), nn.LayerNorm(d), Attention(d, heads)
        self.norm2, self.mlp = nn.LayerNorm(d), Mlp(d, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(x.shape[0], -1, -1)
        q = q + self.attn(self.norm_q(q), self.norm_x(x))
        return (q + self.mlp(self.norm2(q)))[:, 0]


class VJepa2AudioKWS(nn.Module):
    """Raw audio (B, 16000) -> logits (B, classes)."""

    def __init__(self, d_model: int = 80, depth: int = 4, heads: int = 4, mlp_dim: int = 320,
                 num_classes: int = 12) -> None:
        super().__init__()
        self.frontend = LogMel(n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, n_mels=N_MELS, mel="slaney", power=2.0,
                               log_offset=1e-6, f_max=8000.0)
        self.patch = nn.Linear(TOKEN_FRAMES * N_MELS, d_model)
        self.register_buffer("position", sincos_positions(N_TOKENS, d_model), persistent=False)
        self.blocks = nn.ModuleList(PreNormBlock(d_model, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.pooler = AttentivePooler(d_model, heads, mlp_dim)
        self.head = nn.Linear(d_model, num_classes)
        for m in self.modules():  # ViT initialisation: truncated normal 0.02, zero biases
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pooler.query, std=0.02)

    def tokens(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 8, 19 * 128): token j holds frames 19 j .. 19 j + 18 of all 128 bands."""
        spec = self.frontend(audio)[..., :FRAMES]  # (B, 128, 152)
        mean = spec.mean(dim=(1, 2), keepdim=True)
        std = spec.std(dim=(1, 2), keepdim=True)
        spec = (spec - mean) / (std + 1e-5)
        b = spec.shape[0]
        return spec.reshape(b, N_MELS, N_TOKENS, TOKEN_FRAMES).permute(0, 2, 3, 1).reshape(b, N_TOKENS, -1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.tokens(audio)) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.pooler(self.norm(x)))


def vjepa2_audio_cost(card: ModelCard, rate: int) -> Cost:
    """Runs at 16 kHz only (the tubelet's frame count is fixed): another input rate runs band-limited."""
    d, depth, mlp = (card.kwargs.get(k, SIZE[k]) for k in ("d_model", "depth", "mlp_dim"))
    model = card.build()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frames = stft_frames(16000, N_FFT, HOP, center=True)
    front = stft_macs(16000, N_FFT, HOP, N_FFT, center=True) + mel_macs(N_FFT // 2 + 1, N_MELS, frames) \
        + elementwise_macs(N_MELS * FRAMES, 4)  # per-clip mean, variance, subtract, divide
    t = N_TOKENS
    block = (linear_macs(d, 3 * d, t) + 2 * t * t * d + elementwise_macs(t * t, 2) + linear_macs(d, d, t)
             + linear_macs(d, mlp, t) + linear_macs(mlp, d, t) + elementwise_macs(d * t, 2 * 4 + 2))
    pooler = (linear_macs(d, d) + linear_macs(d, 2 * d, t) + 2 * t * d + elementwise_macs(t, 2) + linear_macs(d, d)
              + linear_macs(d, mlp) + linear_macs(mlp, d) + elementwise_macs(d * t, 4) + elementwise_macs(d, 10))
    body = (linear_macs(TOKEN_FRAMES * N_MELS, d, t) + elementwise_macs(d * t) + depth * block
            + elementwise_macs(d * t, 4) + pooler + linear_macs(d, card.num_classes))
    note = "" if rate == 16000 else f"; cannot change rate: at {rate} Hz input it runs band-limited at 16 kHz"
    return Cost(
        model=card.name, rate=rate, trainable_params=params, inference_params=params,
        folded="nothing folded (LayerNorm per token)", frontend_macs=front, body_macs=body,
        notes=f"{t} tokens of {TOKEN_FRAMES} frames x {N_MELS} mel; GELU, exp, sqrt not counted" + note,
    )


register(ModelCard(
    name="vjepa2-audio-kws", family="vjepa2-audio", builder=VJepa2AudioKWS, kwargs=dict(SIZE), input="log-mel-128",
    native_rate=16000, protocol="v2-12", num_classes=12, can_change_rate=False, can_stream=False,
    cost=vjepa2_audio_cost, checkpoint=None, recipe="kwt",
    description="V-JEPA 2-style ViT on 128-mel log spectra, 8 tubelet tokens of 19 frames x 128 mel (hop 105 "
                "samples), d 80, depth 4, 4 heads, attentive-pooling head; sized like KWT-1 (585,212 vs 607,308 "
                "params); no streaming; no public weights (train: kwsbench train, recipe kwt)",
    source="V-JEPA 2 (Assran et al. 2025, arXiv 2506.09985) encoder + attentive probe; audio tubelet "
           "[1, 19, 128, 8] of audio-classifier-v2 (issue 21)",
))

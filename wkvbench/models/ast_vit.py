"""AST-B: the Audio Spectrogram Transformer, with softmax attention called through the registry.

docs/spec.md section 8, following YuanGongND/ast ``src/models/ast_models.py`` (Gong et al.,
Interspeech 2021) on a timm ViT-B/DeiT-B body. Written here from that description; no code copied.

Front end: the spectrogram ``[B, frames, 128]`` is transposed to a one-channel image of 128
frequency rows by ``frames`` time columns (AST's ``x.unsqueeze(1).transpose(2, 3)``) and cut into
16x16 patches at stride 10x10 by a conv: a grid of 12 frequency rows by ``(frames - 16) // 10 + 1``
time columns, flattened row-major (**frequency-major** token order, AST's). A class and a
distillation token are prepended and a learned positional embedding covers all
``12 * ((frames - 16) // 10 + 1) + 2`` tokens (docs/spec.md section 6).

Body: 12 pre-LN blocks, width 768, 12 heads of 64, MLP 3072 with GELU, LayerNorm eps 1e-6, qkv
with bias. Attention: ``q, k, v`` as ``[B, H, T, D]`` into ``wkvbench.attention`` (scale
``D ** -0.5``), output back to ``[B, T, C]`` and the output projection. Head: final LayerNorm,
the mean of the class and distillation tokens, then LayerNorm + linear to 527 classes (AST's
``mlp_head``). Initialisation as timm's ViT: truncated normal (std 0.02) weights, zero biases.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wkvbench.models.common import SpectrogramNet
from wkvbench.presets import Preset

NUM_CLASSES = 527
MLP_RATIO = 4


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, mixer):
        super().__init__()
        self.heads, self.mixer = heads, mixer
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        o = self.mixer(q=q, k=k, v=v)  # [B, H, T, D]
        return self.proj(o.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mixer):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads, mixer)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, MLP_RATIO * width), nn.GELU(), nn.Linear(MLP_RATIO * width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AST(SpectrogramNet):
    """Audio Spectrogram Transformer for ``frames`` spectrogram frames (see the module docstring)."""

    def __init__(self, model: Preset, seconds: float, frames: int, impl: str, init: bool = True):
        super().__init__(model, seconds, frames, impl)
        C = model.width
        self.grid = (self.family_record.freq_cells, self.family_record.time_cells(frames))  # (frequency, time)
        self.patch_embed = self.patch_conv(C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.tokens, C))
        self.blocks = nn.ModuleList(Block(C, model.heads, self.mixer) for _ in range(model.depth))
        self.norm = nn.LayerNorm(C, eps=1e-6)
        self.mlp_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, NUM_CLASSES))
        if init:
            self._init()

    @torch.no_grad()
    def _init(self) -> None:
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, mel: Tensor) -> Tensor:
        self.check_mel(mel)
        B = mel.shape[0]
        x = self.frequency_major_patches(mel)  # 12 frequency rows
        x = torch.cat((self.cls_token.expand(B, -1, -1), self.dist_token.expand(B, -1, -1), x), dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = self.run_block(block, x)
        x = self.norm(x)
        return self.mlp_head((x[:, 0] + x[:, 1]) / 2)

"""A-RWKV-T/S/B: AudioRWKV's network, with its Bi-WKV7 token mixer called through the registry.

docs/spec.md section 8, following the released model (Jiayu-Xiong/AudioRWKV ``models/rwkv7.py``,
arXiv 2509.02167), itself the RWKV-7 "x070" TimeMix/ChannelMix of BlinkDL/RWKV-LM with the
one-token shift replaced by a 2-D ConvShift. Written here from that description; no code copied.
Time-major tokens (``t * 8 + f``); 12 blocks of ``x += TimeMix(LN(x)); x += ChannelMix(LN(x))``.
The per-token equations, LoRA widths and initialisation: docs/notes/models.md ("A-RWKV").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wkvbench.models.common import SpectrogramNet, depthwise_grid_shift
from wkvbench.presets import Preset

NUM_CLASSES = 527


def lora_dim(width: int, factor: float, power: float = 0.5) -> int:
    """RWKV-7's suggested LoRA width: ``max(32, round(factor * C**power / 32) * 32)``."""
    return max(32, int(round(factor * width**power / 32)) * 32)


def _uniform_(t: Tensor, bound: float) -> None:
    nn.init.uniform_(t, -bound, bound)


class TimeMix(nn.Module):
    """RWKV-7 TimeMix with 2-D ConvShift and the bidirectional, gated WKV7 of AudioRWKV."""

    def __init__(self, width: int, heads: int, head_size: int, layer: int, depth: int, grid, mixer, init: bool):
        super().__init__()
        C, H, N = width, heads, head_size
        self.layer, self.heads, self.head_size, self.grid, self.mixer = layer, H, N, grid, mixer
        self.mu = nn.Parameter(torch.zeros(6, C))  # r, w, k, v, a, g mixes
        dw, da, dv, dg = lora_dim(C, 1.8), lora_dim(C, 1.8), lora_dim(C, 1.3), lora_dim(C, 0.6, 0.8)

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape))

        self.w0, self.w1, self.w2 = zeros(C), zeros(C, dw), zeros(dw, C)
        self.a0, self.a1, self.a2 = zeros(C), zeros(C, da), zeros(da, C)
        self.v0, self.v1, self.v2 = zeros(C), zeros(C, dv), zeros(dv, C)
        self.g1, self.g2 = zeros(C, dg), zeros(dg, C)
        self.k_k, self.k_a = zeros(C), zeros(C)
        self.r_k = zeros(H, N)
        self.shift = nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)
        self.gate = nn.Conv1d(C, H, 1, groups=H, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=1e-5 * 8**2)  # x070: eps scaled by head_size_divisor**2
        if init:
            self._init(layer, depth)

    @torch.no_grad()
    def _init(self, layer: int, depth: int) -> None:
        C, N = self.mu.shape[1], self.head_size
        late = layer / max(depth - 1, 1)  # 0 (first layer) .. 1 (last)
        early = 1.0 - layer / depth  # 1 .. ~0
        ddd = torch.arange(C, dtype=torch.float32) / C
        for i, p in enumerate((0.2, 0.9, 0.7, 0.7, 0.9, 0.2)):  # r, w, k, v, a, g
            self.mu[i] = 1.0 - ddd ** (p * early)
        n = torch.arange(C, dtype=torch.float32)
        linear = n / (C - 1) - 0.5
        zig = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)
        zig = zig * zig.abs()
        self.w0.copy_(-6 + 6 * (n / (C - 1)) ** (1 + late**0.3) + 0.5 + 2.5 * zig)
        self.a0.copy_(-0.19 + 0.3 * zig + 0.4 * linear)
        self.v0.copy_(0.73 - 0.4 * linear)
        self.k_k.copy_(0.71 - 0.1 * linear)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        for down, up in ((self.w1, self.w2), (self.a1, self.a2), (self.v1, self.v2), (self.g1, self.g2)):
            _uniform_(down, 0.5 / math.sqrt(C))  # x070: zeros (see the module docstring)
            nn.init.orthogonal_(up, gain=1.0 if up is self.g2 else 0.1)  # x070: 0.1 for g2 too
        bound = 0.5 / math.sqrt(C)
        for lin in (self.receptance, self.value):
            _uniform_(lin.weight, bound)
        _uniform_(self.output.weight, 1.0 / math.sqrt(C))  # x070: zeros (see the module docstring)
        _uniform_(self.key.weight, 0.1 * bound)
        _uniform_(self.shift.weight, bound)
        _uniform_(self.gate.weight, 1.0 / math.sqrt(C // self.heads))

    def forward(self, x: Tensor, v_first: Tensor | None) -> tuple[Tensor, Tensor]:
        B, T, C = x.shape
        H, N = self.heads, self.head_size
        xx = depthwise_grid_shift(self.shift, x, self.grid)
        xr, xw, xk, xv, xa, xg = (x + xx * self.mu[i] for i in range(6))
        r = self.receptance(xr)
        w = -F.softplus(-(self.w0 + torch.tanh(xw @ self.w1) @ self.w2)) - 0.5
        k = self.key(xk)
        v = self.value(xv)
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        alpha = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g_out = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0)
        k = k * (1 + (alpha - 1) * self.k_a)
        gate = torch.sigmoid(self.gate(xx.transpose(1, 2))).transpose(1, 2)  # [B, T, H]

        def heads(t: Tensor) -> Tensor:
            return t.reshape(B, T, H, N)

        y = self.mixer(r=heads(r), w=heads(w), k=heads(k), v=heads(v), a=-kk, b=kk * heads(alpha), g=gate.contiguous())
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        bonus = (heads(r) * heads(k) * self.r_k).sum(dim=-1, keepdim=True) * heads(v)
        y = y + bonus.reshape(B, T, C)
        return self.output(y * g_out), v_first


class ChannelMix(nn.Module):
    """RWKV-7 ChannelMix with 2-D ConvShift: ``W_v relu(W_k mix)^2``, 4C hidden."""

    def __init__(self, width: int, layer: int, depth: int, grid, init: bool):
        super().__init__()
        C = width
        self.grid = grid
        self.mu_k = nn.Parameter(torch.zeros(C))
        self.shift = nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)
        self.key = nn.Linear(C, 4 * C)
        self.value = nn.Linear(4 * C, C)
        if init:
            with torch.no_grad():
                early = 1.0 - layer / depth
                self.mu_k.copy_(1.0 - (torch.arange(C, dtype=torch.float32) / C) ** (early**4))
                _uniform_(self.key.weight, 0.5 / math.sqrt(C))
                _uniform_(self.value.weight, 1.0 / math.sqrt(4 * C))  # x070: zeros (see the module docstring)
                _uniform_(self.shift.weight, 0.5 / math.sqrt(C))

    def forward(self, x: Tensor) -> Tensor:
        xx = depthwise_grid_shift(self.shift, x, self.grid)
        return self.value(torch.relu(self.key(x + xx * self.mu_k)) ** 2)


class Block(nn.Module):
    def __init__(self, model: Preset, layer: int, grid, mixer, init: bool):
        super().__init__()
        C = model.width
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.att = TimeMix(C, model.heads, model.head_size, layer, model.depth, grid, mixer, init)
        self.ffn = ChannelMix(C, layer, model.depth, grid, init)

    def forward(self, x: Tensor, v_first: Tensor | None) -> tuple[Tensor, Tensor]:
        dx, v_first = self.att(self.ln1(x), v_first)
        x = x + dx
        return x + self.ffn(self.ln2(x)), v_first


class ARWKV(SpectrogramNet):
    """AudioRWKV classifier for ``frames`` spectrogram frames (see the module docstring)."""

    def __init__(self, model: Preset, seconds: float, frames: int, impl: str, init: bool = True):
        super().__init__(model, seconds, frames, impl)
        C = model.width
        self.grid = (self.family_record.time_cells(frames), self.family_record.freq_cells)  # (time, frequency)
        self.emb = self.patch_conv(C)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], C))
        self.blocks = nn.ModuleList(Block(model, i, self.grid, self.mixer, init) for i in range(model.depth))
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, NUM_CLASSES, bias=False)
        if init:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            gain = 0.5 * math.sqrt(NUM_CLASSES / C) if NUM_CLASSES > C else 0.5
            nn.init.orthogonal_(self.head.weight, gain=gain)

    def forward(self, mel: Tensor) -> Tensor:
        self.check_mel(mel)
        x = self.emb(mel.unsqueeze(1))  # [B, C, frames // 16, 8]: time rows, frequency columns
        x = x.flatten(2).transpose(1, 2) + self.pos_embed  # time-major tokens
        v_first = None
        for block in self.blocks:
            x, v_first = self.run_block(block, x, v_first)
        return self.head(self.ln_out(x.mean(dim=1)))

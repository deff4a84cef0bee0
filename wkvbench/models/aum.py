"""AuM-T/S/B: Audio Mamba (Fo-Bi), with the bidirectional selective scan called through the registry.

docs/spec.md section 8, following kaistmm/Audio-Mamba-AuM ``src/models/mamba_models.py`` and its
Mamba module (Erol et al., 2024), itself Vision Mamba's (hustvl/Vim) bidirectional Mamba on
``mamba_ssm``. Written here from that description; no code copied. Frequency-major tokens with a
class token in the middle; 24 blocks of ``h = h + Mixer(RMSNorm(h))``. The mixer's equations and
initialisation: docs/notes/models.md ("AuM").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wkvbench.models.common import SpectrogramNet
from wkvbench.presets import Preset

NUM_CLASSES = 527
D_CONV = 4
EXPAND = 2


class BiMamba(nn.Module):
    """Bidirectional Mamba mixer (Fo-Bi): one conv, x_proj and dt_proj, separate A and A_b."""

    def __init__(self, width: int, d_state: int, mixer, depth: int, init: bool):
        super().__init__()
        D = EXPAND * width
        self.d_inner, self.d_state, self.dt_rank, self.mixer = D, d_state, math.ceil(width / 16), mixer
        self.in_proj = nn.Linear(width, 2 * D, bias=False)
        self.conv1d = nn.Conv1d(D, D, D_CONV, groups=D, padding=D_CONV - 1)
        self.x_proj = nn.Linear(D, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, D)
        self.A_log = nn.Parameter(torch.zeros(D, d_state))
        self.A_b_log = nn.Parameter(torch.zeros(D, d_state))
        self.D = nn.Parameter(torch.ones(D))
        self.out_proj = nn.Linear(D, width, bias=False)
        if init:
            self._init(depth)

    @torch.no_grad()
    def _init(self, depth: int) -> None:
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        lo, hi = math.log(1e-3), math.log(0.1)
        dt = torch.exp(torch.rand(self.d_inner) * (hi - lo) + lo).clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        s4d = torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand(self.d_inner, -1)
        self.A_log.copy_(s4d)
        self.A_b_log.copy_(s4d)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        self.out_proj.weight /= math.sqrt(depth)

    def forward(self, h: Tensor) -> Tensor:
        B, T, _ = h.shape
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # [B, D, T] each
        u = F.silu(self.conv1d(x)[..., :T])
        dt, Bm, Cm = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # [B, D, T]
        y = self.mixer(
            u=u,
            delta=delta,
            A=-torch.exp(self.A_log),
            A_b=-torch.exp(self.A_b_log),
            Bm=Bm.transpose(1, 2),
            Cm=Cm.transpose(1, 2),
            Dskip=self.D,
            z=z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))


class Block(nn.Module):
    def __init__(self, model: Preset, mixer, init: bool):
        super().__init__()
        self.norm = nn.RMSNorm(model.width, eps=1e-5)
        self.mixer = BiMamba(model.width, model.d_state, mixer, model.depth, init)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mixer(self.norm(h))


class AuM(SpectrogramNet):
    """Audio Mamba (Fo-Bi) for ``frames`` spectrogram frames (see the module docstring)."""

    def __init__(self, model: Preset, seconds: float, frames: int, impl: str, init: bool = True):
        super().__init__(model, seconds, frames, impl)
        C = model.width
        self.grid = (self.family_record.freq_cells, self.family_record.time_cells(frames))  # (frequency, time)
        self.cls_position = self.grid[0] * self.grid[1] // 2
        self.patch_embed = self.patch_conv(C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.tokens, C))
        self.layers = nn.ModuleList(Block(model, self.mixer, init) for _ in range(model.depth))
        self.norm_f = nn.RMSNorm(C, eps=1e-5)
        self.head = nn.Linear(C, NUM_CLASSES)
        if init:
            with torch.no_grad():
                for p in (self.cls_token, self.pos_embed, self.head.weight):
                    nn.init.trunc_normal_(p, std=0.02)
                nn.init.zeros_(self.head.bias)

    def forward(self, mel: Tensor) -> Tensor:
        self.check_mel(mel)
        B = mel.shape[0]
        x = self.frequency_major_patches(mel)
        c = self.cls_position
        x = torch.cat((x[:, :c], self.cls_token.expand(B, -1, -1), x[:, c:]), dim=1) + self.pos_embed
        for layer in self.layers:
            x = self.run_block(layer, x)
        return self.head(self.norm_f(x)[:, c])

"""Whole networks with the token mixer swapped through the registry (docs/spec.md section 8).

The paper's claims about AudioRWKV (arXiv 2509.02167) -- steadier throughput than AST, 13.3x
faster at ~5.5 min of audio -- are about whole models, so the kernels are also measured inside
the networks they serve: A-RWKV-T/S/B (Bi-WKV7), AST-B (softmax attention) and AuM-T/S/B (Audio
Mamba's bidirectional selective scan), built here from the public code of each model and randomly
initialised. Every network takes a Kaldi-layout log-mel spectrogram ``[B, frames, 128]`` and
returns 527 AudioSet logits; its token mixer calls ``wkvbench.bi_wkv7`` / ``attention`` /
``bi_selective_scan`` with a chosen implementation, so any registered kernel -- a plugin
included -- runs inside a whole network by name::

    import wkvbench.models as wm
    net = wm.build("A-RWKV-T", seconds=10.24, impl="torch_chunked")
    logits = net(wm.spectrogram(batch=1, seconds=10.24))          # [1, 527]
    wm.check("A-RWKV-T", 2.56, "torch_chunked")                   # network accuracy gate

Modules: ``common`` (registry glue, base class, input), ``arwkv``, ``ast_vit``, ``aum`` (one per
family), ``factory`` (build, counts), ``gate`` (accuracy gate), ``train`` (the training step and its gradient
check), ``network_op`` (the ``network`` op, registered
on import), ``listing`` (``wkvbench models``).
"""

from wkvbench.models.common import REFERENCE, Mixer, SpectrogramNet, check_impl, spectrogram
from wkvbench.models.factory import build, frames_for, op_for, param_count, presets, tokens_for
from wkvbench.models.gate import CheckResult, NetworkGate, bar_for, baseline_for, check, check_many
from wkvbench.models.network_op import NetworkCase  # importing it registers the network op
from wkvbench.presets import get_preset

__all__ = [
    "REFERENCE",
    "CheckResult",
    "Mixer",
    "NetworkGate",
    "NetworkCase",
    "SpectrogramNet",
    "bar_for",
    "baseline_for",
    "build",
    "check",
    "check_impl",
    "check_many",
    "frames_for",
    "get_preset",
    "op_for",
    "param_count",
    "presets",
    "spectrogram",
    "tokens_for",
]

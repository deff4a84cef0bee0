"""Predicted peak memory of one network training step (AdamW) at a long duration, per preset: an estimate.

``python benchmarks/network_train_memory.py [SECONDS] [--batch 1,8]`` prints a Markdown table
(used for docs/notes/models.md, "Training memory at 327.68 s"). Nothing here runs on a GPU; the
parts of the estimate:

* **activations the network saves** for the backward: every tensor autograd packs
  (``torch.autograd.graph.saved_tensors_hooks``, once per storage) in one bfloat16 forward on the
  CPU (pure: bf16 weights; autocast: fp32 weights under CPU autocast) at two short durations, with
  the mixer's own internals left out and its inputs counted; a straight line through the two
  (everything but the head is per token) gives the bytes at the long duration;
* **the fused mixer's own saved tensors**, from its construction: Bi-WKV7 (``triton_chunked``) one
  fp32 state per 16-token chunk and direction, 32 B per element of y (docs/notes/training_kernels.md);
  attention (FlashAttention) its output and an fp32 log-sum-exp per (token, head); the scan
  (``mamba_ssm``, Fo-Bi) per direction its output, and for the reverse scan the flipped copies of
  ``u, delta, z, B, C``;
* **parameters**: weights, gradients and AdamW's two moments in the weight dtype (autocast adds the
  bf16 weight copies its cache keeps during the forward);
* **the backward's working set** on top: two blocks' worth of saved activations (the gradient of the
  block being differentiated and its recomputed temporaries), plus for Bi-WKV7 the chunked backward's
  109 B per element of y (docs/notes/training_kernels.md: 141 B peak minus the 32 B saved).

With ``checkpoint = blocks`` (each block recomputed in the backward) the saved activations shrink to
the blocks' inputs (the residual stream, ``B x T x C`` in the activation dtype: float32 under
autocast), and the backward holds one recomputed block's activations on top of its working set.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import torch

from wkvbench.models import build, param_count, spectrogram, train
from wkvbench.presets import PRESETS, get_preset

SHORT = (1.28, 2.56)
GIB = 2**30
#: A CPU mixer per op for the counting forward (its internals are left out of the count).
CPU_MIXER = {"bi_wkv7": "torch_chunked", "attention": "sdpa_math", "bi_selective_scan": "torch_chunked"}


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


@functools.cache
def saved_activation_bytes(preset: str, seconds: float, precision: str, batch: int = 1) -> tuple[int, int]:
    """(bytes autograd saves beyond weights and input with the mixer's internals left out, tokens)."""
    p = get_preset(preset)
    wdtype = torch.float32 if precision == "autocast" else torch.bfloat16
    net = build(p, seconds, CPU_MIXER[p.family_record.mixer_op], wdtype, "cpu", seed=0)
    mel = spectrogram(batch, seconds, dtype=wdtype, seed=0)
    target = train.targets(batch, "cpu")
    own = {_ptr(t) for t in (*net.parameters(), mel)}
    seen: dict[int, int] = {}
    held = []  # what a fused kernel would keep alive: no storage is freed and reused while counting

    def count(t: torch.Tensor) -> None:
        held.append(t)
        ptr = _ptr(t)
        if ptr not in own:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())

    def pack(t):
        count(t)
        return t

    call = net.mixer._call

    def mixer(tensors: dict):  # a fused kernel keeps its inputs (counted) and its internals (modelled apart)
        for t in tensors.values():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2:
                count(t)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            return call(tensors)

    net.mixer._call = mixer
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "autocast" else contextlib.nullcontext()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        loss = train.loss_of(net(mel), target)
    del loss
    return int(sum(seen.values())), net.tokens


def mixer_bytes(preset: str, tokens: int, batch: int) -> tuple[float, float]:
    """(the fused mixer's own saved bytes over all layers, its backward's extra working set for one layer)."""
    p = get_preset(preset)
    op = p.family_record.mixer_op
    bt = batch * tokens
    if op == "bi_wkv7":  # y elements: B*T*C; 32 B saved, 141 B peak per element (training_kernels.md)
        return p.depth * 32.0 * bt * p.width, 109.0 * bt * p.width
    if op == "attention":  # FlashAttention: out (bf16) and lse (fp32) per (token, head)
        return p.depth * bt * (2.0 * p.width + 4.0 * p.heads), 0.0
    d = p.d_inner  # mamba_ssm Fo-Bi: two outputs, flipped u/delta/z and B/C
    return p.depth * bt * (2 * 2.0 * d + 3 * 2.0 * d + 2 * 2.0 * p.d_state), 0.0


def estimate(preset: str, seconds: float, precision: str, batch: int) -> dict:
    (a, t1), (b, t2) = (saved_activation_bytes(preset, s, precision) for s in SHORT)
    per_token = (b - a) / (t2 - t1)
    p = get_preset(preset)
    tokens = p.tokens(seconds)
    saved = batch * (a + per_token * (tokens - t1))
    mixer_saved, mixer_work = mixer_bytes(preset, tokens, batch)
    params = param_count(preset, seconds)
    wbytes = 4 if precision == "autocast" else 2
    param_bytes = params * wbytes * 4 + (params * 2 if precision == "autocast" else 0)  # w, grad, 2 moments
    work = 2 * (saved + mixer_saved) / p.depth + mixer_work
    fixed = param_bytes + batch * tokens * 128 * wbytes  # + the input
    peak = fixed + saved + mixer_saved + work
    block_inputs = p.depth * batch * tokens * p.width * wbytes  # autocast: the residual stream stays float32
    checkpointed = fixed + block_inputs + (saved + mixer_saved) / p.depth + work
    return {
        "preset": preset,
        "precision": precision,
        "batch": batch,
        "tokens": tokens,
        "params": params,
        "per_token_kib": per_token / 1024,
        "activations_gib": (saved + mixer_saved) / GIB,
        "param_state_gib": param_bytes / GIB,
        "peak_gib": peak / GIB,
        "checkpointed_gib": checkpointed / GIB,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", nargs="?", type=float, default=327.68)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--models", default=",".join(PRESETS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| preset | precision | batch | tokens | parameters | saved per token (KiB) | activations (GiB) "
          "| weights, grads, AdamW (GiB) | predicted peak (GiB) | with checkpoint = blocks (GiB) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for precision in ("pure", "autocast"):
            for batch in (int(b) for b in args.batch.split(",")):
                r = estimate(model, args.seconds, precision, batch)
                print(f"| {model} | bf16 {precision} | {batch} | {r['tokens']:,} | {r['params'] / 1e6:.1f}M "
                      f"| {r['per_token_kib']:.0f} | {r['activations_gib']:.1f} | {r['param_state_gib']:.1f} "
                      f"| {r['peak_gib']:.1f} | {r['checkpointed_gib']:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

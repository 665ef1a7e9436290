"""A small character GPT in PyTorch, trained with nanoGPT's published CPU recipe for shakespeare_char, to a time
budget: the comparison for `charlstm train --time` (benchmarks/budget.py).

The recipe (nanoGPT's README, "I only have a macbook"): 4 layers, 4 heads, width 128, no biases, context 64,
batch 12, dropout 0; AdamW lr 1e-3, betas 0.9/0.99, weight decay 0.1 on matrices, gradient clip 1.0, 100 warmup
iterations, then a cosine decay to 1e-4 ending at the last iteration; random windows of the training text.
The number of iterations is fitted to the budget as charlstm fits its steps: timed over the first iterations
(still in warmup, whose rate does not depend on the total) and set once, so that training ends at the budget
counted from the process's start; the scoring after it is not counted (charlstm counts its final evaluation).

Scored on the last 10% of the text (the split charlstm and nanoGPT's shakespeare_char use): every position,
each with the context the model can see (windows of 64 at a stride of 32; each scores the positions its
previous window did not, so all but the first 32 positions have 32-63 characters of context).

    python benchmarks/char_gpt.py --corpus tinyshakespeare --time 2m
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

STARTED = time.monotonic()


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.ln2 = nn.LayerNorm(width, bias=False)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, layers: int = 4, heads: int = 4, width: int = 128) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied, as nanoGPT does
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def score(net: GPT, val: np.ndarray, context: int) -> float:
    """Mean loss in nats per character over every position of `val` (see the module docstring)."""
    stride = context // 2
    total, count = 0.0, 0
    starts = list(range(0, len(val) - 1 - context + 1, stride))
    with torch.no_grad():
        for i in range(0, len(starts), 256):
            chunk = np.asarray(starts[i : i + 256])
            x = torch.from_numpy(np.stack([val[s : s + context] for s in chunk]).astype(np.int64))
            y = torch.from_numpy(np.stack([val[s + 1 : s + context + 1] for s in chunk]).astype(np.int64))
            losses = F.cross_entropy(net(x).transpose(1, 2), y, reduction="none")
            scored = torch.ones_like(losses, dtype=torch.bool)
            scored[torch.from_numpy(chunk > 0), : context - stride] = False  # seen by the previous window
            total += float(losses[scored].sum())
            count += int(scored.sum())
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="a text file, or a corpus name charlstm knows")
    ap.add_argument("--time", required=True, help="budget: 90s, 2m, 10m")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from charlstm import config
    from charlstm.data import corpus

    budget = config.parse_duration(args.time)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vocab, ids = corpus.load_corpus(corpus.resolve(args.corpus))
    tr, va = corpus.split(ids, 0.1)
    context, batch = 64, 12
    net = GPT(len(vocab), context)
    matrices = [p for p in net.parameters() if p.dim() >= 2]
    others = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))
    warmup, top, bottom = 100, 1e-3, 1e-4
    total, probe, times = None, 30, []
    it = 0
    while total is None or it < total:
        lr = top * (it + 1) / (warmup + 1) if it < warmup else None
        if lr is None:
            assert total is not None
            done = min((it - warmup) / max(total - warmup, 1), 1.0)
            lr = bottom + 0.5 * (1 + math.cos(math.pi * done)) * (top - bottom)
        for g in opt.param_groups:
            g["lr"] = lr
        tic = time.monotonic()
        starts = rng.integers(0, len(tr) - context - 1, batch)
        x = torch.from_numpy(np.stack([tr[s : s + context] for s in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([tr[s + 1 : s + context + 1] for s in starts]).astype(np.int64))
        loss = F.cross_entropy(net(x).reshape(-1, len(vocab)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        times.append(time.monotonic() - tic)
        it += 1
        if total is None and it == probe:  # fit the iterations once, inside the warmup
            per_it = float(np.median(times[5:]))
            total = max(it + int((budget - (time.monotonic() - STARTED)) / per_it), warmup + 1)
    trained = time.monotonic() - STARTED
    val = score(net, va, context)
    out = {"system": "char-gpt", "steps": it, "val_loss": round(val, 4), "trained_s": round(trained, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

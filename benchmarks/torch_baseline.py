"""A plain PyTorch LSTM baseline for tiny-shakespeare, measured with charlstm's own validation metric.

Recipe (the usual char-rnn setup): nn.Embedding -> 2 x 256 nn.LSTM -> nn.Linear, Adam lr 2e-3, global-norm clip
5, batch 64, windows of 100 drawn at random (zero state each), no dropout. At each evaluation step the torch
weights are copied into charlstm's parameter layout and scored by `charlstm.training.loop.validation_loss` on the same
validation split (the last 10%), so both recipes are judged by exactly the same code.

    pip install ".[bench]"
    charlstm corpus get tinyshakespeare      # or pass --corpus PATH
    python benchmarks/torch_baseline.py --steps 4000 --eval 400,1000,1400,2000,3000,4000 --out torch_baseline.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import torch
from torch import nn

from charlstm import config
from charlstm.data import batches, corpus
from charlstm.training import loop


class Net(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(x))
        return self.head(out)


def to_charlstm(net: Net) -> dict:
    """torch weights -> charlstm params (input-major, one fused bias, embedding kept separate)."""
    t = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    layers = []
    for k in range(net.rnn.num_layers):
        layers.append(
            {
                "W_ih": jnp.asarray(t[f"rnn.weight_ih_l{k}"].T),
                "W_hh": jnp.asarray(t[f"rnn.weight_hh_l{k}"].T),
                "b": jnp.asarray(t[f"rnn.bias_ih_l{k}"] + t[f"rnn.bias_hh_l{k}"]),
            }
        )
    return {
        "layers": layers,
        "embed": jnp.asarray(t["embedding.weight"]),
        "head": {"W": jnp.asarray(t["head.weight"].T), "b": jnp.asarray(t["head.bias"])},
    }


def train_step(net: Net, opt: torch.optim.Optimizer, b: batches.Batch) -> torch.Tensor:
    """One Adam step on a batch, the gradient clipped to norm 5; returns the loss."""
    logits = net(torch.from_numpy(b.x.astype(np.int64)))
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), torch.from_numpy(b.y.astype(np.int64)).flatten())
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--corpus",
        default="tinyshakespeare",
        help="a text file, or a corpus name `charlstm corpus get` downloaded (default: tinyshakespeare)",
    )
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--eval", default="400,1000,1400,2000,3000,4000", help="comma-separated steps to evaluate at")
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = config.load(
        "shakespeare",
        [
            f"model.layers={args.layers}",
            f"model.hidden={args.hidden}",
            f"model.embed={args.embed}",
            "model.dropout=0.0",
        ],
    )
    path = corpus.resolve(args.corpus)
    if not path.is_file():
        raise SystemExit(
            f"error: corpus {args.corpus} not found; run `charlstm corpus get tinyshakespeare` or pass --corpus"
        )
    vocab, ids = corpus.load_corpus(path)
    tr, va = corpus.split(ids, cfg.data.val_fraction)
    val = batches.eval_batches(va, cfg.data.batch_size, cfg.data.seq_len, cfg.train.eval_batches)
    eval_step = loop.make_eval_step(cfg.model)
    net = Net(len(vocab), args.embed, args.hidden, args.layers)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    wanted = {int(s) for s in args.eval.split(",")}
    curve, tic, train_s = [], time.perf_counter(), 0.0
    for step in range(args.steps):
        b = batches.random_batch(tr, step, cfg.data.batch_size, cfg.data.seq_len, args.seed)
        t0 = time.perf_counter()
        loss = train_step(net, opt, b)
        train_s += time.perf_counter() - t0
        if step + 1 in wanted:
            val_loss = loop.validation_loss(to_charlstm(net), cfg.model, eval_step, val)
            row = {
                "step": step + 1,
                "train_loss": round(loss.item(), 4),
                "val_loss": round(val_loss, 4),
                "train_minutes": round(train_s / 60, 2),
                "wall_minutes": round((time.perf_counter() - tic) / 60, 2),
            }
            curve.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"recipe": vars(args) | {"out": str(args.out)}, "curve": curve}, indent=1))


if __name__ == "__main__":
    main()

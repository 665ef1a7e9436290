"""PyTorch's side of `charlstm bench --vs-torch` (the optional `bench` extra; this module is imported only then).

Its model is the one `charlstm export` writes (embedding -> nn.LSTM/GRU/RNN -> linear) loaded with the same
weights, trained with Adam and global-norm clipping as charlstm is, and sampled with the per-character Python loop
people write. On a CPU each of its measurements runs at 1 thread and at torch's default thread count, and the
faster one counts. Where JAX runs on an NVIDIA GPU and torch has CUDA, torch runs there too (cuDNN's LSTM), so
both sides use the same device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import torch
from torch import nn

from charlstm.config import Config
from charlstm.nn import export, model


class TorchSide:
    """The same network in PyTorch, as a user writes it (eager autograd, a Python loop for sampling)."""

    def __init__(self, cfg: Config, vocab_size: int, params: model.Params, x: np.ndarray, y: np.ndarray) -> None:
        m, self.vocab_size, self.version = cfg.model, vocab_size, torch.__version__
        on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        torch.manual_seed(0)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[m.cell]
        e = m.embed or vocab_size  # model.embed 0: one-hot input, exported as a frozen identity embedding
        self.net = nn.ModuleDict(
            {
                "embedding": nn.Embedding(vocab_size, e),
                "rnn": rnn_cls(e, m.hidden, num_layers=m.layers),  # time-major, like charlstm inside
                "head": nn.Linear(m.hidden, vocab_size),
            }
        )
        sd = export.torch_state_dict(params, cfg, vocab_size)
        # The start state (h0, c0) is an input of nn.LSTM, not a module weight; at initialisation it is zeros,
        # which is nn.LSTM's default state, so both sides time the same computation.
        weights = {k: v for k, v in sd.items() if k not in ("h0", "c0")}
        self.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        self.net.to(self.device)
        self.net["embedding"].weight.requires_grad_(bool(m.embed))
        self.trainable = [p for p in self.net.parameters() if p.requires_grad]
        o = cfg.optim  # charlstm's AdamW with weight_decay 0 is Adam; the lr schedule is not worth a comparison
        self.opt = torch.optim.Adam(self.trainable, lr=o.lr, betas=(o.b1, o.b2))
        self.clip = o.clip_norm
        self.x, self.y = (torch.from_numpy(np.asarray(a).T.copy()).long().to(self.device) for a in (x, y))
        self.state: Any = None
        # On a CPU every measurement runs at 1 thread and at torch's default, and the faster counts: a baseline
        # never handicapped by its thread count, which a loaded machine can turn either way.
        self.counts = [torch.get_num_threads()] if on_gpu else sorted({1, torch.get_num_threads()})
        self.first_loss = self.train(1)[1]
        for n in self.counts:  # warm up oneDNN's kernels at each thread count
            torch.set_num_threads(n)
            self.train(1), self.sample(1, 8), self.sample(64, 8)

    def fastest(self, fn: Callable[[], float]) -> tuple[float, int]:
        """`fn` timed at each thread count: the shorter time, and the thread count that gave it."""
        times: dict[int, float] = {}
        for n in self.counts:
            torch.set_num_threads(n)
            times[n] = fn()
        best = min(times, key=times.__getitem__)
        return times[best], best

    def forward(self, ids: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        out, state = self.net["rnn"](self.net["embedding"](ids), state)
        return self.net["head"](out), state

    def train(self, steps: int) -> tuple[float, float]:
        """(seconds, last loss) for `steps` updates."""
        tic, loss = time.perf_counter(), 0.0
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            logits, state = self.forward(self.x, self.state)
            # Truncated BPTT, as in charlstm: the state is carried, its gradient is not.
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            out = torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab_size), self.y.reshape(-1))
            out.backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.clip)
            self.opt.step()
            loss = out.item()
        return time.perf_counter() - tic, loss

    def sample(self, batch: int, length: int) -> float:
        """A per-character loop: run one step, softmax, draw, feed the draw back in."""
        tic = time.perf_counter()
        with torch.no_grad():
            tok, state = torch.zeros((1, batch), dtype=torch.long, device=self.device), None
            for _ in range(length):
                logits, state = self.forward(tok, state)
                tok = torch.multinomial(torch.softmax(logits[0], dim=-1), 1).T
            tok.cpu()  # on a GPU the loop only queued the work: wait for the last draw
        return time.perf_counter() - tic

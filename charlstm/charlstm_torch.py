"""A character-level language model trained by charlstm, in plain PyTorch: this file and PyTorch are all it needs.

`charlstm export --out DIR` copies this file into DIR beside the model:

    DIR/model.safetensors   the weights, under the parameter names of `CharRNN` below
    DIR/config.json         the run's configuration (its "model" section sets the network's shape)
    DIR/vocab.json          the characters (or bytes) the model knows, in id order

Use it from Python (with DIR on sys.path, or the file copied next to your script):

    import charlstm_torch
    model = charlstm_torch.load("DIR")
    print(model.generate("The ", length=200, temperature=0.8, seed=1))
    print(model.score(Path("held-out.txt").read_bytes()))   # nats per character
    logits, state = model(ids)    # ids: LongTensor [batch, time]; logits [batch, time, vocab]

or from a shell:

    python DIR/charlstm_torch.py DIR --prompt "The " --length 200
    python DIR/charlstm_torch.py DIR --score held-out.txt

The network is the one charlstm trained: an embedding (or one-hot input), stacked LSTM, GRU or tanh-RNN layers
(PyTorch's own nn.LSTM / nn.GRU / nn.RNN, or the layer-normalised LSTM below), a linear head (or the
embedding table itself, when tied), and a start state h0 (and c0) per layer that every text is read from.
It computes in float32: a run trained with model.compute_dtype bfloat16 scores slightly differently here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-5  # charlstm's layer norm: (x - mean) / sqrt(var + 1e-5) over the last axis, no gain of its own

# h [layers, batch, hidden]; (h, c) for an LSTM. Union, not "|": this file runs outside charlstm, on older Pythons.
State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]  # noqa: UP007


class LayerNormLSTM(nn.Module):
    """Stacked layer-normalised LSTM layers (Ba et al., 2016), batch-first, with nn.LSTM's gate order i, f, g, o:

        gates = LN(x W_ih^T) * gain_ih + LN(h W_hh^T) * gain_hh + bias
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(LN(c') * gain_c + bias_c)

    LN normalises to zero mean and unit variance (eps 1e-5); the gains and shifts are the parameters below.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        g = 4 * hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            for name, shape, fill in (
                ("weight_ih", (g, n_in), 0.0),
                ("weight_hh", (g, hidden_size), 0.0),
                ("bias", (g,), 0.0),
                ("gain_ih", (g,), 1.0),
                ("gain_hh", (g,), 1.0),
                ("gain_c", (hidden_size,), 1.0),
                ("bias_c", (hidden_size,), 0.0),
            ):
                self.register_parameter(f"{name}_l{k}", nn.Parameter(torch.full(shape, fill)))

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [batch, time, input] and (h, c), each [layers, batch, hidden] -> outputs [batch, time, hidden], (h, c)."""
        h_all, c_all = state
        hs, cs = [], []
        for k in range(self.num_layers):
            p = lambda name: getattr(self, f"{name}_l{k}")  # noqa: E731
            # The input projection of every timestep at once; only h W_hh is sequential.
            xw = _ln(x @ p("weight_ih").T) * p("gain_ih") + p("bias")
            h, c = h_all[k], c_all[k]
            outs = []
            for t in range(x.shape[1]):
                gates = xw[:, t] + _ln(h @ p("weight_hh").T) * p("gain_hh")
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(_ln(c) * p("gain_c") + p("bias_c"))
                outs.append(h)
            x = torch.stack(outs, dim=1)
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


def _ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS)


class TiedHead(nn.Module):
    """The output layer of a model whose head is its embedding table: logits = h E^T / sqrt(E) + bias.

    The table is scaled by 1/sqrt(E) because it is sized for inputs (about unit norm per entry); unscaled, the
    logits would be about sqrt(E) times larger than an untied head's.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return F.linear(h, table / math.sqrt(table.shape[1]), self.bias)


class CharRNN(nn.Module):
    """The exported network. `config` is config.json's content, `vocab` vocab.json's."""

    def __init__(self, config: dict, vocab: dict) -> None:
        super().__init__()
        m = config["model"]
        self.cell, self.num_layers, self.hidden_size = m["cell"], m["layers"], m["hidden"]
        self.encoding, self.symbols = vocab["encoding"], [int(s) for s in vocab["symbols"]]
        self.vocab_size = v = len(self.symbols)
        self.ids = {s: i for i, s in enumerate(self.symbols)}
        self.embed_size = m.get("embed", 0)  # 0: one-hot input
        self.tied = bool(m.get("tie_embed", False))
        n_in = self.embed_size or v
        if self.embed_size:
            self.embedding = nn.Embedding(v, self.embed_size)
        if m.get("layer_norm", False):
            self.rnn: nn.Module = LayerNormLSTM(n_in, self.hidden_size, self.num_layers)
        else:
            rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[self.cell]
            self.rnn = rnn_class(n_in, self.hidden_size, num_layers=self.num_layers, batch_first=True)
        self.head: nn.Module = TiedHead(v) if self.tied else nn.Linear(self.hidden_size, v)
        # The start state every text is read from: learned by the run, or zeros (then kept fixed here too).
        learned = m.get("start_state", "zeros") == "learned"
        self.h0 = nn.Parameter(torch.zeros(self.num_layers, self.hidden_size), requires_grad=learned)
        if self.cell == "lstm":
            self.c0 = nn.Parameter(torch.zeros(self.num_layers, self.hidden_size), requires_grad=learned)

    def initial_state(self, batch: int) -> State:
        """The start state for `batch` texts: h [layers, batch, hidden] (and c, for an LSTM)."""
        h = self.h0[:, None].expand(-1, batch, -1).contiguous()
        return (h, self.c0[:, None].expand(-1, batch, -1).contiguous()) if self.cell == "lstm" else h

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits [batch, time, vocab] of the character after each of `ids` [batch, time], and the state after
        the last one. Without `state`, the texts are read from the start state."""
        if self.embed_size:
            x = self.embedding(ids)
        else:
            x = F.one_hot(ids, self.vocab_size).to(self.h0.dtype)
        out, state = self.rnn(x, self.initial_state(ids.shape[0]) if state is None else state)
        logits = self.head(out, self.embedding.weight) if self.tied else self.head(out)
        return logits, state

    # --- text in and out ------------------------------------------------------------------------------------

    def encode(self, text: str | bytes) -> torch.Tensor:
        """The ids of `text` [length] (bytes are UTF-8 text, or raw bytes for a byte-level model); a character the
        model does not know is a ValueError that names it."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        points = list(raw) if self.encoding == "bytes" else [ord(ch) for ch in raw.decode("utf-8")]
        unknown = sorted({chr(p) for p in points if p not in self.ids})
        if unknown:
            raise ValueError(f"characters not in the model's vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self.ids[p] for p in points], dtype=torch.long)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        points = [self.symbols[int(i)] for i in ids]
        if self.encoding == "bytes":
            return bytes(points).decode("utf-8", errors="replace")
        return "".join(map(chr, points))

    @torch.no_grad()
    def score(self, text: str | bytes, chunk: int = 4096) -> float:
        """The mean loss in nats per character of predicting each character of `text` from those before it, read
        from the start state in one stream (as `charlstm eval` scores a file: pass a file's bytes, so that its
        line ends stay as they are)."""
        ids = self.encode(text).to(self.h0.device)
        if len(ids) < 2:
            raise ValueError("the text needs at least 2 characters")
        total, state = 0.0, None
        for start in range(0, len(ids) - 1, chunk):
            x, y = ids[start : start + chunk], ids[start + 1 : start + chunk + 1]
            logits, state = self(x[: len(y)][None], state)
            total += F.cross_entropy(logits[0].double(), y, reduction="sum").item()
        return total / (len(ids) - 1)

    @torch.no_grad()
    def generate(
        self,
        prompt: str | None = None,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        line_start: bool = True,
    ) -> str:
        """The prompt followed by `length` sampled characters.

        Each character is drawn from softmax(logits / temperature), among the `top_k` most likely (0: all) and
        the smallest set holding `top_p` of the probability (1: all); `greedy` takes the most likely one. With
        `line_start`, the model reads a newline before the prompt, as the prompt starts a line of text. The default
        prompt is a newline.
        """
        newline = self.ids.get(ord("\n"))
        if prompt is None:
            prompt = "\n" if newline is not None else self.decode([0])
        ids = self.encode(prompt)
        if len(ids) == 0:
            raise ValueError("the prompt is empty")
        if line_start and newline is not None and ids[0] != newline:
            ids = torch.cat([torch.tensor([newline]), ids])
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        logits, state = self(ids[None].to(self.h0.device))
        out = []
        for _ in range(length):
            last = logits[0, -1].float()
            if greedy:
                tok = int(last.argmax())
            else:
                tok = int(torch.multinomial(_filtered_probs(last, temperature, top_k, top_p).cpu(), 1, generator=rng))
            out.append(tok)
            logits, state = self(torch.tensor([[tok]], device=self.h0.device), state)
        return prompt + self.decode(out)


def _filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """softmax(logits / temperature) over the top-k and nucleus (top-p) candidates only."""
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(0) - sorted_probs  # the mass of the more likely ones: the first always stays
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order] = before < top_p
        probs = probs * keep
    return probs / probs.sum()


# --- loading ------------------------------------------------------------------------------------------------

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (an 8-byte header length, a JSON header, then the raw little-endian
    data), read without the safetensors package."""
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = (8 + n + offset for offset in info["data_offsets"])
        flat = (
            torch.frombuffer(bytearray(data[start:end]), dtype=_DTYPES[info["dtype"]])
            if end > start
            else torch.zeros(0, dtype=_DTYPES[info["dtype"]])
        )
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def load(directory: str | Path, device: str | torch.device = "cpu") -> CharRNN:
    """The model `charlstm export --out DIRECTORY` wrote, in evaluation mode."""
    d = Path(directory)
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    model = CharRNN(config, vocab)
    model.load_state_dict(read_safetensors(d / "model.safetensors"), strict=True)
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sample from, or score a text with, a model exported by charlstm.")
    parser.add_argument(
        "directory",
        nargs="?",
        default=str(Path(__file__).resolve().parent),
        help="the exported directory (default: this file's)",
    )
    parser.add_argument("--prompt", default=None, help="text to start from (default: a newline)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1: off)")
    parser.add_argument("--greedy", action="store_true", help="always the most likely character")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--score", metavar="FILE", help="print the loss on a text file instead of sampling")
    args = parser.parse_args(argv)
    model = load(args.directory)
    if args.score:
        nats = model.score(Path(args.score).read_bytes())
        print(f"{nats:.6f} nats/char, {nats / math.log(2):.6f} bits/char")
        return
    sys.stdout.write(
        model.generate(args.prompt, args.length, args.temperature, args.top_k, args.top_p, args.greedy, args.seed)
        + "\n"
    )


if __name__ == "__main__":
    main()

"""Generating text: feed the prompt through the network, then sample inside a compiled loop.

The prompt is read in blocks of `PROMPT_BLOCK` characters and its remainder one character at a time, so two
compiled programs read a prompt of any length: prompts of many lengths (the prompt check asks dozens) do not
each compile a program of their own. Generation runs as a jitted `lax.scan` over a chunk of characters with the
state carried between chunks, so there is one Python-level call per chunk (streamed to the caller as it
completes), never one per character. Every chunk of a generation has the same length, so it compiles once: a
last, shorter remainder is generated in full and cut.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import MAX_SEED, ModelConfig
from charlstm.data import corpus
from charlstm.data.corpus import Vocab
from charlstm.errors import UsageError
from charlstm.nn import model


@dataclass(frozen=True)
class SampleOptions:
    """How to draw a sample: the one set of options `charlstm sample`, `Model.sample` / `Model.stream` and
    `charlstm serve` take (`charlstm.SampleOptions`); validated by `check`. `chunk` and `newline_id` are set by
    the callers that read a prompt (`FIELDS` lists the others, a user's to choose)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "length",
        "temperature",
        "top_k",
        "top_p",
        "greedy",
        "seed",
        "num_samples",
        "stop",
    )

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    greedy: bool = False
    seed: int = 0
    num_samples: int = 1
    # A sample ends where it first completes one of these texts; the stop itself is not part of the output (as
    # in the OpenAI and llama.cpp APIs), so a sample cut at "\n" is one line.
    stop: tuple[str, ...] = ()
    # Characters per compiled call, the streaming granularity: long enough to amortise each call's fixed cost,
    # short enough to stream (docs/performance.md).
    chunk: int = 512
    newline_id: int = -1  # if >= 0, read before the prompt so that it starts a fresh line of text

    def check(self, vocab_size: int) -> None:
        """Reject out-of-range options with one-line messages."""
        if self.length < 1:
            raise UsageError(f"--length must be at least 1 (got {self.length})", "pass e.g. --length 500")
        if not self.greedy and not self.temperature > 0:
            raise UsageError(f"--temperature must be > 0 (got {self.temperature})", "use --greedy for argmax decoding")
        if self.top_k < 0 or self.top_k > vocab_size:
            raise UsageError(
                f"--top-k must be in 0..{vocab_size} (the vocabulary size), got {self.top_k}", "0 disables it"
            )
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1], got {self.top_p}", "1 disables it")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be in 0..{MAX_SEED} (got {self.seed})", "pass e.g. --seed 1")
        if self.num_samples < 1:
            raise UsageError(f"--num-samples must be at least 1 (got {self.num_samples})", "pass e.g. --num-samples 4")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise UsageError(f"stop must be a list of texts (got {self.stop!r})", 'pass e.g. stop=["\\n\\n"]')
        if "" in self.stop:
            raise UsageError("--stop is empty", "pass the text that ends a sample, e.g. --stop '\\n\\n'")


def unescape(text: str) -> str:
    """A --stop value with Python-style escapes read: "\\n\\n" is two newlines, "\\t" a tab, "\\\\" a backslash."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # "\\q" and other unknown escapes
            return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except (UnicodeDecodeError, DeprecationWarning):
        raise UsageError(
            f"--stop {text!r} has an escape Python does not know", "use \\n, \\t, \\\\, \\xHH or \\uXXXX"
        ) from None


class StopScan:
    """Cuts a sample, fed as pieces of text, where it first completes one of `stops`: `feed` returns what is
    safe to show (it holds back an end that could be the start of a stop), `done` says a stop was met, `flush`
    returns what was held back once the sample ends without one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.held = ""
        self.done = False

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        text = self.held + piece
        # The stop completed first (the earliest end) ends the sample; a sample streamed character by character
        # would have stopped there.
        ends = [(k + len(s), k) for s in self.stops if (k := text.find(s)) >= 0]
        if ends:
            self.done, self.held = True, ""
            return text[: min(ends)[1]]
        keep = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def filter_logits(logits: jax.Array, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf."""
    logits = logits / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        # Keep a token while the mass before it is < top_p, so the most likely token always survives.
        cutoff_index = jnp.sum(cum - jax.nn.softmax(sorted_logits, axis=-1) < top_p, axis=-1, keepdims=True) - 1
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


# Prompt characters read per compiled call; the rest of a prompt (fewer than this) is read one at a time.
PROMPT_BLOCK = 64


@functools.lru_cache(maxsize=16)
def _compiled(cfg: ModelConfig, opts: SampleOptions) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def read(params: model.Params, ids: jax.Array, carry: model.Carry) -> tuple[jax.Array, model.Carry]:
        logits, carry = model.apply(params, ids, carry, cfg)
        return logits[:, -1], carry

    def chunk(params: model.Params, logits: jax.Array, carry: model.Carry, key: jax.Array, n: int) -> tuple[Any, ...]:
        # Loop-invariant work stays out of the per-character loop: the embedding is folded into layer 0's
        # table once, and the Gumbel noise of the whole chunk is drawn in one call (argmax(logits + Gumbel)
        # is a draw from softmax(logits), what jax.random.categorical computes per call). The key is split
        # here rather than by the caller: an eager split is a dispatch of its own per chunk.
        params = model.folded(params)
        key, sub = jax.random.split(key)
        noise = jnp.zeros((n, 0)) if opts.greedy else jax.random.gumbel(sub, (n, *logits.shape), logits.dtype)

        def one(state: tuple[Any, ...], g: jax.Array) -> tuple[Any, ...]:
            logits, carry = state
            if opts.greedy:
                tok = jnp.argmax(logits, axis=-1)
            else:
                tok = jnp.argmax(filter_logits(logits, opts.temperature, opts.top_k, opts.top_p) + g, axis=-1)
            out, carry = model.apply(params, tok[:, None], carry, cfg)
            return (out[:, 0], carry), tok

        toks: jax.Array
        (logits, carry), toks = jax.lax.scan(one, (logits, carry), noise)
        return toks.T, logits, carry, key

    return jax.jit(read), jax.jit(chunk, static_argnums=4)


def compiled(cfg: ModelConfig, opts: SampleOptions) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The jitted (read, chunk) pair for these options: `read` feeds prompt ids to a state, `chunk` generates.
    Keyed by what the compiled code depends on only: another seed, length or batch size reuses the functions
    (and their compilations) of an earlier call."""
    return _compiled(cfg, dataclasses.replace(opts, seed=0, length=1, num_samples=1, newline_id=-1, stop=()))


def generate(params: model.Params, cfg: ModelConfig, prompt: np.ndarray, opts: SampleOptions) -> Iterator[np.ndarray]:
    """Yield [num_samples, n] arrays of generated ids, chunk by chunk, until `opts.length` ids."""
    read, chunk = compiled(cfg, opts)
    if opts.newline_id >= 0 and prompt[0] != opts.newline_id:
        prompt = np.concatenate([[opts.newline_id], prompt])
    ids = np.broadcast_to(np.asarray(prompt, np.int32)[None], (opts.num_samples, len(prompt)))
    carry = model.start_carry(params, cfg, opts.num_samples)
    blocks = len(prompt) // PROMPT_BLOCK * PROMPT_BLOCK
    for at in [*range(0, blocks, PROMPT_BLOCK), *range(blocks, len(prompt))]:
        logits, carry = read(params, ids[:, at : at + (PROMPT_BLOCK if at < blocks else 1)], carry)
    key = jax.random.PRNGKey(opts.seed)
    n = min(opts.chunk, opts.length)  # one length for every chunk: one compilation
    for done in range(0, opts.length, n):
        toks, logits, carry, key = chunk(params, logits, carry, key, n)
        yield np.asarray(toks)[:, : opts.length - done]


def encode_prompt(vocab: Vocab, prompt: str, skip_unknown: bool = False) -> np.ndarray:
    """Prompt -> ids; characters outside the vocabulary are an error (or dropped with `skip_unknown`)."""
    if prompt == "":
        raise UsageError("the prompt is empty", "pass at least one character with --prompt, or omit --prompt")
    return corpus.encode_text(vocab, prompt, source="the prompt", skip_unknown=skip_unknown)[0]


def newline_id(vocab: Vocab) -> int:
    """The id of "\n" (-1 if the vocabulary has none): a prompt read after it starts a line, as in training text."""
    return vocab.symbols.index(ord("\n")) if ord("\n") in vocab.symbols else -1


def default_prompt(vocab: Vocab) -> str:
    """A newline when the vocabulary has one (text starts a fresh line), else its first symbol."""
    return "\n" if ord("\n") in vocab.symbols else vocab.symbol(0)


def sample_text(params: model.Params, cfg: ModelConfig, vocab: Vocab, prompt: str, opts: SampleOptions) -> list[str]:
    """Whole samples as strings (prompt included), one per stream."""
    prompt_ids = encode_prompt(vocab, prompt)
    parts = list(generate(params, cfg, prompt_ids, opts))
    out = np.concatenate(parts, axis=1)
    return [prompt + vocab.decode(row) for row in out]

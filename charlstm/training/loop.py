"""Training: the state pytree, the optimizer, the jitted step and the loop that reports through events.

The loop never prints. It calls `emit(event)` and leaves display, metric files and checkpoints to the caller.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm.config import Config, ModelConfig, OptimConfig
from charlstm.data import batches
from charlstm.events import EvalEvent, Event, StepEvent
from charlstm.nn import model
from charlstm.training.distributed import Layout, one_device


class TrainState(NamedTuple):
    """Everything needed to continue a run exactly. The data position is `step` (batches are a function of it)."""

    params: model.Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: optimizer steps taken
    key: jax.Array  # base PRNG key; step k uses fold_in(key, k)
    carry: model.Carry  # hidden state carried into the next batch


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class EarlyStopping:
    """`train.patience`: stop once `patience` evaluations in a row have not lowered the best validation loss.

    `fit` updates it at every evaluation; a resumed run rebuilds it from the validation losses it recorded
    (`from_history`), so stopping does not depend on where a run was interrupted. A NaN loss counts as no
    improvement. The best checkpoint needs nothing here: the checkpoint manager always keeps it.
    """

    patience: int  # 0: never stop early
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the best one

    def update(self, step: int, val_loss: float) -> None:
        if self.best is None or val_loss < self.best:
            self.best, self.best_step, self.bad_evals = val_loss, step, 0
        else:
            self.bad_evals += 1

    @property
    def triggered(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    @classmethod
    def from_history(cls, patience: int, evals: Iterable[tuple[int, float]]) -> EarlyStopping:
        """The state after the (step, validation loss) evaluations of a run so far, in step order."""
        early = cls(patience)
        for step, val_loss in evals:
            early.update(step, val_loss)
        return early


def learning_rate(cfg: OptimConfig, step: jax.Array | int, total_steps: jax.Array | int) -> jax.Array:
    """The learning rate at `step` of `total_steps`: linear warmup to `lr`, then a cosine decay to
    `lr * min_lr_ratio` (cosine), `lr` (constant), or `lr` until the last `decay_fraction` of the steps and a
    cosine decay over them (wsd).

    Written in jnp rather than with optax's schedule builders so that `total_steps` may be traced: a time budget
    fits the total while training runs, without compiling the step again. Under wsd the rate before the decay
    does not depend on the total, so fitting it leaves every step already taken as a rerun takes it.
    """
    step = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    warmup = jnp.minimum(cfg.warmup_steps, jnp.maximum(total - 1, 0))
    end = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        after = jnp.asarray(cfg.lr, jnp.float32)
    else:
        if cfg.schedule == "cosine":
            first, last = warmup, jnp.maximum(total, warmup + 1)
        else:  # wsd
            last = total
            first = jnp.maximum(total - jnp.maximum(jnp.round(cfg.decay_fraction * total), 1), warmup)
        done = jnp.clip((step - first) / jnp.maximum(last - first, 1), 0.0, 1.0)
        after = end + (cfg.lr - end) * 0.5 * (1 + jnp.cos(jnp.pi * done))
    return jnp.where(step < warmup, cfg.lr * step / jnp.maximum(warmup, 1), after)


class AverageState(NamedTuple):
    """The optimizer-state node of `average_params`: how many updates it has seen and their running average."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; the name is a key in saved checkpoints
    params: model.Params


def average_params(decay: float) -> optax.GradientTransformation:
    """An exponential moving average of the parameters after each update (Polyak averaging); updates pass
    through unchanged. It must come last in a chain, where `params + updates` are the new parameters.

    The average smooths out the noise of a high learning rate, so it scores like a model whose learning rate
    has already been annealed. The decay ramps up as min(decay, (1 + t) / (10 + t)) so the average forgets
    the random initialisation within a few steps instead of ~1 / (1 - decay).
    """

    def init(params: model.Params) -> AverageState:
        return AverageState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(jnp.copy, params))

    def update(
        updates: optax.Updates, state: AverageState, params: model.Params | None = None
    ) -> tuple[optax.Updates, AverageState]:
        t = state.count.astype(jnp.float32)
        d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        new = optax.apply_updates(params, updates)
        avg = jax.tree_util.tree_map(lambda a, p: d * a + (1.0 - d) * p, state.params, new)
        return updates, AverageState(state.count + 1, avg)

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: OptimConfig, total_steps: jax.Array | int) -> optax.GradientTransformation:
    """Global-norm clipping, AdamW (weight decay on matrices only, not biases), then the weight average."""
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    schedule = lambda count: learning_rate(cfg, count, total_steps)  # noqa: E731
    adamw = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    parts += [adamw] + ([average_params(cfg.ema)] if cfg.ema > 0 else [])
    return optax.chain(*parts) if len(parts) > 1 else adamw


def weights(state: TrainState) -> model.Params:
    """The parameters to evaluate, sample and export: the running average with optim.ema, else the raw ones."""
    nodes = jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda n: isinstance(n, AverageState))
    averages = [n.params for n in nodes if isinstance(n, AverageState)]
    return averages[0] if averages else state.params


def initial_params(cfg: Config, vocab_size: int) -> model.Params:
    """The parameters a run starts from, from `train.seed`."""
    k_init, _ = jax.random.split(jax.random.PRNGKey(cfg.train.seed))
    return model.init_params(cfg.model, vocab_size, k_init)


def init_state(cfg: Config, vocab_size: int, params: model.Params | None = None) -> TrainState:
    """Step 0: fresh optimizer state and zero carry from `train.seed`, with `params` (fine-tuning: another
    run's weights) or fresh parameters."""
    _, k_run = jax.random.split(jax.random.PRNGKey(cfg.train.seed))
    params = initial_params(cfg, vocab_size) if params is None else params
    opt_state = make_optimizer(cfg.optim, cfg.train.steps).init(params)
    carry = model.zeros_carry(cfg.model, cfg.data.batch_size)
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32), k_run, carry)


def state_shardings(layout: Layout) -> TrainState:
    """Where each TrainState field lives (a pytree prefix): the carry split by rows with the batch, the rest
    replicated. Parameters are small next to activations here, so replicating them costs little memory and
    keeps the update local; only the gradients are all-reduced."""
    rep = layout.replicated
    return TrainState._make((rep, rep, rep, rep, layout.data))


def place_state(state: TrainState, layout: Layout) -> TrainState:
    """Copy a TrainState computed identically on every process (fresh from the seed) onto the mesh."""

    def put(tree: Any, fn: Callable[[Any], jax.Array]) -> Any:
        return jax.tree_util.tree_map(fn, tree)

    return TrainState(
        put(state.params, layout.put_replicated),
        put(state.opt_state, layout.put_replicated),
        layout.put_replicated(state.step),
        layout.put_replicated(state.key),
        put(state.carry, layout.put_global),
    )


def loss_fn(
    params: model.Params,
    x: jax.Array,
    y: jax.Array,
    carry: model.Carry,
    cfg: ModelConfig,
    *,
    train: bool,
    key: jax.Array | None,
    dropout_scale: jax.Array | float = 1.0,
) -> tuple[jax.Array, model.Carry]:
    """Mean next-character cross entropy in nats, and the carry after the batch."""
    logits, carry = model.apply(params, x, carry, cfg, train=train, key=key, dropout_scale=dropout_scale)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), carry


def make_train_step(cfg: Config, layout: Layout | None = None) -> jax.stages.Wrapped:
    """The jitted update `step(state, x, y, reset, total)`: forward, backward, clip, AdamW, with the learning
    rate scheduled over `total` steps (usually `train.steps`); skipped (state kept) if anything is non-finite.

    One SPMD program over the layout's mesh (default: this process's first device): x, y and the carry split
    by rows, the rest replicated; the mean loss over the global batch makes XLA all-reduce the gradients.
    """
    layout = layout or one_device()

    def step(
        state: TrainState, x: jax.Array, y: jax.Array, reset: jax.Array, total: jax.Array | int
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        tx = make_optimizer(cfg.optim, total)  # `total` traced: a time budget may change it without a compile
        key = jax.random.fold_in(state.key, state.step)
        scale = model.dropout_ramp_scale(cfg.model, state.step)

        def loss(params: model.Params) -> tuple[jax.Array, model.Carry]:
            # Truncated BPTT: the carried state enters as a constant, so no gradient crosses the batch boundary;
            # rows that restart (`reset` [B]) read the start state instead, and its gradient is the start's.
            carry = model.restart(params, cfg.model, state.carry, reset)
            return loss_fn(params, x, y, carry, cfg.model, train=True, key=key, dropout_scale=scale)

        (loss_value, new_carry), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ok = jnp.isfinite(loss_value) & jnp.isfinite(grad_norm)

        def keep(new: Any, old: Any) -> Any:
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)

        new_state = TrainState(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + 1,
            key=state.key,
            carry=keep(new_carry, model.restart(state.params, cfg.model, state.carry, reset)),
        )
        return new_state, {
            "loss": loss_value,
            "grad_norm": grad_norm,
            "lr": learning_rate(cfg.optim, state.step, total),
            "ok": ok,
        }

    sh = state_shardings(layout)
    return jax.jit(
        step,
        donate_argnums=0,
        in_shardings=(sh, layout.data, layout.data, layout.data, layout.replicated),
        out_shardings=(sh, layout.replicated),
    )


@functools.cache
def make_eval_step(cfg: ModelConfig) -> Callable[..., tuple[jax.Array, model.Carry]]:
    """Jitted validation step: summed loss of one batch and the carry after it (one per model config, so a
    validation pass compiled before training, to time it, is the one training uses)."""

    def step(params: model.Params, x: jax.Array, y: jax.Array, carry: model.Carry) -> tuple[jax.Array, model.Carry]:
        logits, carry = model.apply(params, x, carry, cfg)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(), carry

    return jax.jit(step)


def validation_loss(
    params: model.Params,
    cfg: ModelConfig,
    eval_step: Callable[..., tuple[jax.Array, model.Carry]],
    val: list[batches.Batch],
    layout: Layout | None = None,
) -> float:
    """Mean validation loss in nats per character, state carried through the validation streams."""
    layout = layout or one_device()
    # Every process holds the validation set whole: it is split by rows where it divides.
    carry = jax.tree_util.tree_map(layout.put_global, model.start_carry(params, cfg, val[0].x.shape[0]))
    total = layout.put_replicated(np.zeros((), np.float32))
    for b in val:
        loss, carry = eval_step(params, layout.put_global(b.x), layout.put_global(b.y), carry)
        total = total + loss
    return float(total) / sum(b.x.size for b in val)


def fit(
    cfg: Config,
    state: TrainState,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    *,
    emit: Callable[[Event], None],
    save: Callable[[TrainState, float | None], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    layout: Layout | None = None,
    newline: int = -1,
    early: EarlyStopping | None = None,
    plan: Callable[[int], int] | None = None,
) -> TrainState:
    """Train from `state.step` to `cfg.train.steps`, evaluating, reporting and saving on schedule.

    `newline` is the id of "\n" in the vocabulary (-1: none), where `data.line_restarts` rows start.
    Returns the final state; stops early (returning the state reached) when `should_stop()` turns true, or after
    an evaluation that triggers `early` (updated in place; `early.triggered` then tells the caller why).
    `state` must be on the layout's mesh (default: this process's first device; `place_state`, or a checkpoint
    restored onto it); each process gathers only its own rows of every batch, and `should_stop` must agree
    across processes (see `distributed.any_process`).
    Raises NonFiniteError after `train.max_bad_steps` consecutive non-finite steps (none of them applied).
    `plan(steps_done)`, called before the first step and after each one, gives the number of steps to train to
    (a time budget's; default `train.steps`); the learning-rate schedule follows it.
    """
    d, t = cfg.data, cfg.train
    layout = layout or one_device()
    train_step = make_train_step(cfg, layout)
    eval_step = make_eval_step(cfg.model)
    rows = layout.rows(d.batch_size)
    val = batches.eval_batches(val_ids, d.batch_size, d.seq_len, t.eval_batches)
    last_val: float | None = None
    bad = 0
    step = int(state.step)
    total = t.steps if plan is None else plan(step)
    while step < total:
        if should_stop():
            break
        tic = time.perf_counter()
        b = batches.get_batch(
            train_ids,
            step,
            d.batch_size,
            d.seq_len,
            t.seed,
            d.batching,
            rows=rows,
            line_restarts=d.line_restarts,
            newline=newline,
            curriculum=d.curriculum,
        )
        x, y = layout.put_rows(b.x, d.batch_size), layout.put_rows(b.y, d.batch_size)
        state, m = train_step(state, x, y, layout.put_rows(b.reset, d.batch_size), total)
        loss = float(m["loss"])  # syncs; cheap next to a step, and gives exact per-step metrics
        dt = time.perf_counter() - tic
        bad = 0 if bool(m["ok"]) else bad + 1
        emit(
            StepEvent(
                step + 1, loss, float(m["grad_norm"]), float(m["lr"]), d.batch_size * d.seq_len / dt, skipped=bad > 0
            )
        )
        if bad >= t.max_bad_steps:
            raise NonFiniteError(f"{bad} consecutive steps had a non-finite loss or gradient (last at step {step + 1})")
        done = step = step + 1
        total = total if plan is None else plan(done)
        if done % t.eval_every == 0 or done == total:
            used = weights(state)
            last_val = validation_loss(used, cfg.model, eval_step, val, layout)
            raw = validation_loss(state.params, cfg.model, eval_step, val, layout) if used is not state.params else None
            emit(EvalEvent(done, last_val, used, raw))
            if early is not None:
                early.update(done, last_val)
        if save is not None and done % cfg.checkpoint.every == 0 and done != total:
            save(state, last_val)
        if early is not None and early.triggered:
            break  # the caller saves this step, as it saves the last one
    return state

"""The generator's exponential moving average (Karras et al. 2018; Yazici et al.
2019): what sample grids, `wgan_jax.sample` and `wgan_jax.evaluate` use by
default when a run keeps one (config `ema.decay` > 0).

After generator update t (0-based) the average becomes
    ema <- d * ema + (1 - d) * theta,   d = decay if t >= start else 0,
so before `start` it copies the generator (BigGAN's `ema_start`) and never
averages in the random initialisation. It averages the batch statistics too,
as BigGAN-PyTorch's `ema` class averages every entry of the state dict, so a
generator sampled with running statistics (`sampling_batch_norm` "running")
gets statistics that match its averaged weights; sampling with the batch's own
statistics (the default) does not read them. It lives in
`TrainState.generator_ema` and is checkpointed with the state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from wgan_jax.state import NetState, PyTree, TrainState


def initial(generator: NetState) -> PyTree:
  """The average at step 0: the generator itself."""
  return {"params": generator.params, "batch_stats": generator.batch_stats}


def update(average: PyTree, generator: NetState, step: jax.Array, decay: float,
           start: int) -> PyTree:
  """The average after generator update `step` (0-based) produced `generator`."""
  d = jnp.where(step >= start, decay, 0.0).astype(jnp.float32)
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), average,
                      initial(generator))


def as_net(average: PyTree) -> NetState:
  """The average as a generator to sample from (no optimizer state)."""
  return NetState(params=average["params"], batch_stats=average["batch_stats"], opt_state=None)


def sampling_generator(state: TrainState) -> NetState:
  """What a run samples and is evaluated with: its moving average if it keeps one."""
  return as_net(state.generator_ema) if state.generator_ema else state.generator

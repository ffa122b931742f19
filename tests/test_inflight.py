"""Iterations in flight: read back at most `depth` behind, each checked."""
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import updates
from wgan_jax.inflight import InFlight, NonFiniteError


def metrics(loss, nonfinite=0.0):
  return {"critic_loss": jnp.float32(loss), updates.NONFINITE_PARAMS: jnp.float32(nonfinite)}


def test_at_most_depth_iterations_stay_in_flight():
  inflight = InFlight(depth=2)
  for step in range(1, 6):
    inflight.push(step, metrics(step))
    # Before step n + 1 is dispatched, step n - 1 has come back and was checked.
    assert inflight.last_checked == max(0, step - 2)
  inflight.drain()
  assert inflight.last_checked == 5
  assert inflight.means() == {"critic_loss": pytest.approx(3.0)}  # the check's count is no curve
  assert inflight.means() == {}


def test_a_non_finite_metric_names_its_step():
  inflight = InFlight(depth=1)
  inflight.push(1, metrics(0.5))
  inflight.push(2, metrics(np.nan))
  with pytest.raises(NonFiniteError, match="^non-finite critic_loss at generator step 2; "
                     "lower optimizer.lr or check the data$"):
    inflight.push(3, metrics(0.5))


def test_non_finite_parameters_are_caught_with_finite_losses():
  inflight = InFlight(depth=2)
  inflight.push(4, metrics(0.5, nonfinite=3.0))
  with pytest.raises(NonFiniteError, match="^non-finite parameters after generator step 4;"):
    inflight.drain()

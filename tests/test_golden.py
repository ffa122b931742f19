"""Every experiment still computes what it computed when its numbers were
recorded (tests/golden.py; BUILD.md, "Numbers held")."""
import pytest

from tests import golden

# On the CPU kind a case was recorded on, three iterations agree to float rounding
# (XLA:CPU's threads may sum in another order), not bit for bit.
RTOL = 1e-4
HELD = golden.load()


# The development tier holds the three toy setups (seconds each); CI holds every case.
QUICK = ("toy_8gaussians", "toy_8gaussians_clip", "toy_8gaussians_gan")


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(golden.cases())])
def test_case_computes_what_was_recorded(name):
  experiment, overrides = golden.cases()[name]
  assert name in HELD, f"{name} has no recorded numbers: python -m tests.golden --write {name}"
  # Records without a machine were made on the CPU kind CI ran them on.
  recorded_on = HELD[name].get("machine")
  if recorded_on and recorded_on != golden.machine():
    pytest.skip(f"{name} was recorded on another CPU kind ({recorded_on}), where its numbers "
                f"hold; this is {golden.machine()}")
  problems = golden.compare(HELD[name], golden.run_case(experiment, overrides), RTOL)
  assert not problems, f"{name}: {len(problems)} arrays differ, e.g. {problems[:3]}"


def test_every_experiment_is_held():
  from wgan_jax import configs
  assert set(configs.known_experiments()) <= set(HELD)
  assert set(golden.VARIANTS) <= set(HELD)


def test_compare_sees_a_change():
  held = HELD["toy_8gaussians"]
  moved = {"state": dict(held["state"]), "metrics": held["metrics"]}
  path = next(p for p in moved["state"] if "critic" in p and "params" in p)
  s, a, q = moved["state"][path]
  moved["state"][path] = [s + 10 * RTOL * a, a, q]
  assert golden.compare(held, moved, RTOL) and not golden.compare(held, held, RTOL)

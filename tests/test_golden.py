"""Every experiment still computes what it computed when its numbers were
recorded (tests/golden.py; BUILD.md, "Numbers held")."""
import pytest

from tests import golden

RTOL = golden.RTOL
HELD = golden.load()


# The development tier holds the three toy setups (seconds each); CI holds every case.
QUICK = ("toy_8gaussians", "toy_8gaussians_clip", "toy_8gaussians_gan")


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(golden.cases())])
def test_case_computes_what_was_recorded(name):
  experiment, overrides = golden.cases()[name]
  assert name in HELD, f"{name} has no recorded numbers: python -m tests.golden --write {name}"
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
  moved["state"][path] = [s + 10 * golden.tolerance(held, path, RTOL) * a, a, q]
  assert golden.compare(held, moved, RTOL) and not golden.compare(held, held, RTOL)


def test_an_array_that_rounding_moves_is_held_to_its_noise():
  held = {"state": {"w": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}, "metrics": {},
          "noise": {"w": 0.0, "b": 0.1 / golden.NOISE_MARGIN}}
  assert golden.tolerance(held, "w", RTOL) == RTOL
  assert golden.tolerance(held, "b", RTOL) == pytest.approx(0.1)
  within = {"state": {"w": [1.0, 1.0, 1.0], "b": [1.04, 1.04, 1.0816]}, "metrics": {}}
  past = {"state": {"w": [1.0, 1.0, 1.0], "b": [1.2, 1.2, 1.44]}, "metrics": {}}
  assert not golden.compare(held, within, RTOL)
  assert [p.split(":")[0] for p in golden.compare(held, past, RTOL)] == ["b"]


# A change each quick case must catch, and how many of its arrays it moved past their
# tolerance when this was written (of 54, 36 and 54).
CHANGES = {"toy_8gaussians": (("penalty_weight", "0.11"), 1),
           "toy_8gaussians_clip": (("clip", "0.011"), 12),
           "toy_8gaussians_gan": (("optimizer.lr", "0.000202"), 45)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_rounding_stays_within_the_record_and_a_change_does_not(name):
  """A nudge the record never saw (another seed) is within every array's
  tolerance; a penalty or clip 10% stronger, or a learning rate 1% higher, is not."""
  experiment, overrides = golden.cases()[name]
  assert not golden.compare(HELD[name], golden.run_case(experiment, overrides, nudge_seed=7),
                            RTOL)
  change, _ = CHANGES[name]
  problems = golden.compare(HELD[name], golden.run_case(experiment, (*overrides, change)), RTOL)
  assert problems, f"{name} with {change} computes what was recorded"

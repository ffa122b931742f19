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
  record = golden.record_for(HELD[name], golden.machine())
  if record is None:
    kinds = [HELD[name]["machine"], *HELD[name].get("elsewhere", {})]
    pytest.skip(f"{name} holds numbers for other CPU kinds ({'; '.join(kinds)}); this is "
                f"{golden.machine()}: python -m tests.golden --write --here {name}")
  problems = golden.compare(record, golden.run_case(experiment, overrides), RTOL)
  assert not problems, f"{name}: {len(problems)} arrays differ, e.g. {problems[:3]}"


def test_every_experiment_is_held():
  from wgan_jax import configs
  assert set(configs.known_experiments()) <= set(HELD)
  assert set(golden.VARIANTS) <= set(HELD)


def test_a_record_holds_where_it_was_made():
  record = {"state": {}, "metrics": {}, "machine": "kind A",
            "elsewhere": {"kind B": {"state": {"x": [1, 1, 1]}, "metrics": {}}}}
  assert golden.record_for(record, "kind A") is record
  assert golden.record_for(record, "kind B") == record["elsewhere"]["kind B"]
  assert golden.record_for(record, "kind C") is None
  legacy = {"state": {}, "metrics": {}}  # made on CI's kind before records named one
  assert golden.record_for(legacy, "kind C") is legacy
  assert golden.record_for({**legacy, "elsewhere": record["elsewhere"]}, "kind B") == \
      record["elsewhere"]["kind B"]


def test_compare_sees_a_change():
  held = HELD["toy_8gaussians"]
  moved = {"state": dict(held["state"]), "metrics": held["metrics"]}
  path = next(p for p in moved["state"] if "critic" in p and "params" in p)
  s, a, q = moved["state"][path]
  moved["state"][path] = [s + 10 * RTOL * a, a, q]
  assert golden.compare(held, moved, RTOL) and not golden.compare(held, held, RTOL)

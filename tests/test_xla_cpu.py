"""The XLA:CPU flag wgan_jax sets: accepted by the installed jaxlib, it moves
convolutions off YNNPACK and leaves matmuls there; a user's setting wins."""
import json
import os
import subprocess
import sys

from wgan_jax import xla_cpu

_PROBE = """
import json, os
import wgan_jax  # sets the flag before JAX starts
import jax, jax.numpy as jnp
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(  # a DCGAN critic layer
    x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
dot = jax.jit(lambda a, b: a @ b)
hlo = lambda f, *shapes: f.lower(*map(jnp.ones, shapes)).compile().as_text()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""),
                  "conv_ynn": "__ynn_fusion" in hlo(conv, (8, 32, 32, 64), (4, 4, 64, 128)),
                  "dot_ynn": "__ynn_fusion" in hlo(dot, (256, 256), (256, 256))}))
"""


def _probe(xla_flags: str | None) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_flag_is_accepted_and_moves_convolutions_only():
  probe = _probe(None)
  assert probe["flags"] == xla_cpu.FLAG
  assert probe == {"flags": xla_cpu.FLAG, "conv_ynn": False, "dot_ynn": True}


def test_users_own_setting_wins():
  own = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution"
  probe = _probe(f"--xla_force_host_platform_device_count=2 {own}")
  assert probe["flags"] == f"--xla_force_host_platform_device_count=2 {own}"
  assert probe["conv_ynn"] and probe["dot_ynn"]


def test_configure_appends_once_and_only_for_known_jaxlib(monkeypatch):
  # In this process JAX may be running already (earlier tests): then it is too late.
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: True)
  env = {}
  assert not xla_cpu.configure(env, (0, 10)) and env == {}
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: False)
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_cpu.configure(env, (0, 10))
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {xla_cpu.FLAG}"
  assert not xla_cpu.configure(env, (0, 10))  # already there
  assert env["XLA_FLAGS"].count("ynn") == 1
  for version in ((0, 4), (0, 9), (0, 12), (1, 0)):  # XLA would abort on an unknown flag
    env = {}
    assert not xla_cpu.configure(env, version) and env == {}


def test_code_optimisation_is_turned_off_once_and_a_users_level_wins(monkeypatch):
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: False)
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert xla_cpu.without_code_optimisation(env)
  assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 "
                              "--xla_backend_optimization_level=0")
  assert not xla_cpu.without_code_optimisation(env)  # already there
  env = {"XLA_FLAGS": "--xla_backend_optimization_level=2"}
  assert not xla_cpu.without_code_optimisation(env) and env["XLA_FLAGS"].endswith("=2")
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: True)
  env = {}
  assert not xla_cpu.without_code_optimisation(env) and env == {}

"""One module per experiment, each with `get_config() -> ml_collections.ConfigDict`.

Run one by name: `python -m wgan_jax.train --experiment=NAME`. Modules whose
name starts with an underscore are shared pieces, not experiments.
"""

"""What a generator is measured by: exact W1 on toy sets (`toy`), the
Inception metrics (`inception`, `features`, `image_metrics`), a digit
classifier's (`domain`) and a fixed critic's estimate (`yardstick`).

The names a run's `eval.metrics` and `wgan_jax.evaluate --metrics` take are
listed here, once."""
from __future__ import annotations

INCEPTION = ("fid", "kid", "is", "pr")
DOMAIN = "domain"
CRITIC = "critic_w"
ALL = (*INCEPTION, DOMAIN, CRITIC)
# A fresh critic per checkpoint is a study, not a periodic evaluation.
IN_TRAINING = (*INCEPTION, DOMAIN)


def parse(text: str, allowed: tuple[str, ...] = ALL) -> tuple[str, ...]:
  """"fid, kid" -> ("fid", "kid"): known names, in order, once each; a
  ValueError of one line otherwise. "" -> ()."""
  names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
  unknown = [n for n in names if n not in allowed]
  if unknown:
    raise ValueError(f"unknown metric {unknown[0]!r}; use some of {', '.join(allowed)}")
  return names

"""Nearest neighbours of feature sets, computed on the devices.

The k-NN metrics (precision/recall, density/coverage) compare every sample of
one set with every sample of another: 50,000 x 50,000 distances of 2,048-d
features. Here the squared distances ||a||^2 + ||b||^2 - 2ab are float32
matrix products on the devices (`Precision.HIGHEST`: no TF32 or bfloat16
passes), the query rows in blocks split over this process's devices along a
`data` mesh, the key set on every device in blocks of its own (a running top-k
merged over them), so no [queries, keys] matrix is ever whole.

The answers are the float64 ones, not approximations of them:

- Both sets are centred on the keys' mean first, which leaves distances as
  they are and keeps the norms, and so the cancellation in the formula, small.
- Neighbours: the device ranks a few spare candidates beyond the k asked for;
  the host recomputes their distances in float64 and ranks again.
- Ball membership: a float32 squared distance further than `TOLERANCE` (relative
  to ||a||^2 + ||b||^2, a the largest point) from the radius squared decides;
  pairs inside that band are decided by the host in float64, with the same
  formula as the neighbours' distances, so a point exactly on a ball's edge is
  decided as its radius was measured.

Every process computes the whole answer on its own devices (nothing crosses
hosts), so all processes hold the same numbers.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from wgan_jax import placement

# Query rows a step (all devices together) and key rows a block: the [rows, keys]
# float32 distance block of a device stays at most 64 MB.
QUERY_BLOCK = 2048
KEY_BLOCK = 8192
# The float32 squared distance is trusted to this share of ||a||^2 + ||b||^2 of
# the centred rows (its rounding is a few float32 epsilons of that sum); closer
# calls go to the host in float64.
TOLERANCE = 1e-5
# Candidates ranked on the device beyond the k asked for, ranked again in float64.
SPARE = 4
# Host rows a float64 step (bounds the [rows, candidates, D] differences).
_HOST_ROWS = 512


def kth_distances(x: np.ndarray, k: int, block: int = QUERY_BLOCK) -> np.ndarray:
  """Each row's Euclidean distance to its k-th nearest other row of `x`
  (float64 [N]); a duplicate row counts as a neighbour at distance 0."""
  x = _features(x, "x")
  if not 1 <= k < len(x):
    raise ValueError(f"the k-th nearest other row needs 1 <= k < rows; got k = {k} with "
                     f"{len(x)} rows")
  # Column 0 is the row itself (or a duplicate of it, at the same distance 0).
  return nearest(x, x, k + 1, block=block)[0][:, k]


def nearest(queries: np.ndarray, keys: np.ndarray, k: int = 1, block: int = QUERY_BLOCK
            ) -> tuple[np.ndarray, np.ndarray]:
  """(distances float64 [Q, k] ascending, indices [Q, k] into `keys`) of each
  query's k nearest keys."""
  queries, keys = _features(queries, "queries"), _features(keys, "keys")
  _same_width(queries, keys)
  if not 1 <= k <= len(keys):
    raise ValueError(f"the {k} nearest keys need 1 <= k <= keys ({len(keys)})")
  candidates = min(k + SPARE, len(keys))
  centre = keys.mean(axis=0)
  key_blocks, key_norms = _key_blocks(keys, centre, np.inf)
  (index,) = _over_queries(functools.partial(_nearest_block, k=candidates),
                           _centred(queries, centre), (key_blocks, key_norms), block)
  index = index.astype(np.int64)
  distances = np.empty((len(queries), k))
  chosen = np.empty((len(queries), k), np.int64)
  for start in range(0, len(queries), _HOST_ROWS):
    rows = slice(start, start + _HOST_ROWS)
    d = pair_distances(queries[rows, None, :], keys[index[rows]])
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    distances[rows] = np.take_along_axis(d, order, axis=1)
    chosen[rows] = np.take_along_axis(index[rows], order, axis=1)
  return distances, chosen


def count_within(points: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                 strict: bool = False, block: int = QUERY_BLOCK) -> np.ndarray:
  """For each point, how many centres c have ||p - c|| <= radii[c] (< with
  `strict`, as density and coverage count): int64 [P]."""
  points, centres = _features(points, "points"), _features(centres, "centres")
  _same_width(points, centres)
  radii = np.asarray(radii, np.float64)
  if radii.shape != (len(centres),):
    raise ValueError(f"radii must be one per centre, shape ({len(centres)},); got {radii.shape}")
  centre = centres.mean(axis=0)
  key_blocks, key_norms = _key_blocks(centres, centre, 0.0)
  centred = _centred(points, centre)
  # The band of each centre, for the largest point norm: at least each pair's.
  largest = np.square(centred.astype(np.float64)).sum(axis=1).max()
  band = TOLERANCE * (largest + key_norms.reshape(-1)[:len(centres)].astype(np.float64))
  # A padding centre's bounds are -inf: nothing is inside it, nor near its edge.
  below, above = (_padded((np.square(radii) + sign * band).astype(np.float32),
                          key_blocks.shape[:2], -np.inf) for sign in (-1, 1))
  constants = (key_blocks, key_norms, below, above)
  sure, unsure = _over_queries(functools.partial(_count_block, mask=False), centred, constants,
                               block)
  counts = sure.astype(np.int64)
  near = np.flatnonzero(unsure)
  if len(near):
    # The same program again on the points near an edge (their number rounded up
    # to a power of two: few programs to compile): its sure count and the pairs
    # it left undecided, decided here in float64.
    padded = np.resize(near, min(1 << (len(near) - 1).bit_length(), max(len(near), block)))
    sure, undecided = _over_queries(functools.partial(_count_block, mask=True), centred[padded],
                                    constants, block)
    sure, undecided = sure[:len(near)], undecided[:len(near)]
    rows, cols = np.nonzero(undecided.reshape(len(near), -1)[:, :len(centres)])
    d = pair_distances(points[near[rows]], centres[cols])
    inside = d < radii[cols] if strict else d <= radii[cols]
    counts[near] = sure + np.bincount(rows, weights=inside, minlength=len(near)).astype(np.int64)
  return counts


def pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """||a - b|| over the last axis in float64, rows paired (with broadcasting):
  the one formula every float64 distance here comes from."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  return np.sqrt(np.einsum("...d,...d->...", diff, diff))


# ----------------------------------------------------------------------------
# The device programs.
# ----------------------------------------------------------------------------


def _products(a: jax.Array, b: jax.Array) -> jax.Array:
  """a b^T in float32, no TF32 or bfloat16 passes."""
  return jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.jit, static_argnames=("k",))
def _nearest_block(queries, key_blocks, key_norms, k: int):
  """Indices of each query's k nearest keys, merged block by block. They rank
  by 2ab - ||b||^2, the squared distance less the query's own ||a||^2 (a
  padding key's norm is inf: never chosen)."""
  rows, width = queries.shape[0], key_blocks.shape[1]

  def merge(best, block):
    keys, norms, offset = block
    score = 2 * _products(queries, keys) - norms[None, :]
    top, index = jax.lax.top_k(score, min(k, width))
    scores = jnp.concatenate([best[0], top], axis=1)
    indices = jnp.concatenate([best[1], index + offset], axis=1)
    top, position = jax.lax.top_k(scores, k)
    return (top, jnp.take_along_axis(indices, position, axis=1)), None

  start = (jnp.full((rows, k), -jnp.inf, jnp.float32), jnp.zeros((rows, k), jnp.int32))
  offsets = jnp.arange(key_blocks.shape[0], dtype=jnp.int32) * width
  (_, index), _ = jax.lax.scan(merge, start, (key_blocks, key_norms, offsets))
  return index


@functools.partial(jax.jit, static_argnames=("mask",))
def _count_block(points, centre_blocks, centre_norms, below, above, mask: bool):
  """Per point: how many centres hold it beyond doubt (squared distance under
  `below`, the radius squared less the band), and how many (or, with `mask`,
  which) are too close to their edge to tell (between `below` and `above`)."""
  point_norms = jnp.sum(points * points, axis=1)

  def count(sure, block):
    centres, norms, low, high = block
    d2 = point_norms[:, None] + norms[None, :] - 2 * _products(points, centres)
    undecided = (d2 >= low[None, :]) & (d2 <= high[None, :])
    sure = sure + jnp.sum(d2 < low[None, :], axis=1, dtype=jnp.int32)
    return sure, undecided if mask else jnp.sum(undecided, axis=1, dtype=jnp.int32)

  sure, undecided = jax.lax.scan(count, jnp.zeros(points.shape[0], jnp.int32),
                                 (centre_blocks, centre_norms, below, above))
  if mask:  # [blocks, rows, width] -> [rows, blocks * width]
    return sure, jnp.transpose(undecided, (1, 0, 2)).reshape(points.shape[0], -1)
  return sure, jnp.sum(undecided, axis=0)


# ----------------------------------------------------------------------------
# Host side: blocks in, blocks out.
# ----------------------------------------------------------------------------


def _features(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or len(x) == 0 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{name} must be float features [rows >= 1, D]; got {x.dtype} "
                     f"{x.shape}")
  if not np.isfinite(x).all():
    raise ValueError(f"{name} hold NaN or infinite values: check the network's weights and "
                     "the images")
  return x


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"the two sets of features differ in width: {a.shape[1]} and {b.shape[1]}")


def _centred(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
  return (x - centre.astype(x.dtype)).astype(np.float32)


def _padded(x: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
  """`x` [n, ...] laid out as [blocks, width, ...], the rows past n `fill`."""
  out = np.full((shape[0] * shape[1], *x.shape[1:]), fill, x.dtype)
  out[:len(x)] = x
  return out.reshape(*shape, *x.shape[1:])


def _key_blocks(keys: np.ndarray, centre: np.ndarray, pad_norm: float
                ) -> tuple[np.ndarray, np.ndarray]:
  """The centred keys as float32 [blocks, width, D] (zero rows past the end)
  and their squared norms [blocks, width] (`pad_norm` past the end): blocks
  of equal width, at most KEY_BLOCK, so that little of the last is padding."""
  blocks = -(-len(keys) // KEY_BLOCK)
  shape = (blocks, -(-len(keys) // blocks))
  centred = _centred(keys, centre)
  norms = np.square(centred.astype(np.float64)).sum(axis=1).astype(np.float32)
  return _padded(centred, shape, 0.0), _padded(norms, shape, pad_norm)


def _mesh() -> Mesh:
  return placement.make_mesh(sorted(jax.local_devices(), key=lambda d: d.id))


def _over_queries(fn, queries: np.ndarray, keys: tuple[np.ndarray, ...], block: int
                  ) -> list[np.ndarray]:
  """fn(query block, *keys) over blocks of `queries` split across the devices,
  the keys on every device; the outputs concatenated over the queries."""
  mesh = _mesh()
  # Steps of equal size, at most `block` rows (rounded up to split over the devices).
  steps = -(-len(queries) // block)
  rows = -(-len(queries) // (steps * mesh.size)) * mesh.size
  rows_sharding = placement.batch_sharding(mesh)
  keys = placement.replicate(keys, mesh)
  outputs, pending = [], None
  for start in range(0, len(queries), rows):
    chunk = queries[start:start + rows]
    n = len(chunk)
    if n < rows:  # The last block filled up with its own rows, cut back below.
      chunk = np.resize(chunk, (rows, chunk.shape[1]))
    result = fn(jax.device_put(chunk, rows_sharding), *keys)
    # One block in flight: the devices compute the next while the host copies this one.
    if pending is not None:
      outputs.append(_fetch(*pending))
    pending = (result, n)
  outputs.append(_fetch(*pending))
  return [np.concatenate(parts) for parts in zip(*outputs)]


def _fetch(result, n: int) -> list[np.ndarray]:
  return [np.asarray(x)[:n] for x in jax.tree.leaves(result)]

"""Class-conditional ResNets (models/conditional.py): conditional batch norm
is the only way labels reach the generator, the AC-GAN and projection heads
compute what their papers say, and the sizes are gan_cifar_resnet.py's."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import terms
from wgan_jax.models import conditional, registry, resnet

Z = jax.random.normal(jax.random.PRNGKey(0), (4, 128))
X = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3))
LABELS = jnp.array([0, 3, 9, 3], jnp.int32)


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def generator():
  g = conditional.ConditionalResNetGenerator(32, dim=8)
  return g, g.init(jax.random.PRNGKey(2), Z, LABELS)


@pytest.fixture(scope="module")
def projection():
  d = conditional.ConditionalResNetCritic(32, dim=8, head="projection")
  return d, d.init(jax.random.PRNGKey(10), X, LABELS)


def _with_class_tables(params, key):
  """Random per-class scales and offsets (as after training) in every
  conditional batch norm."""
  flat = flax.traverse_util.flatten_dict(params)
  for i, path in enumerate(sorted(p for p in flat if "ConditionalBatchNorm" in p[-2])):
    noise = jax.random.normal(jax.random.fold_in(key, i), flat[path].shape)
    flat[path] = flat[path] + 0.5 * noise
  return flax.traverse_util.unflatten_dict(flat)


def _as_unconditional(tree, row: int = 0):
  """Conditional generator variables -> the unconditional generator's: each
  ConditionalBatchNorm_i becomes BatchNorm_i with class `row`'s scale/offset
  and the running statistics of its inner batch norm."""
  out = {}
  for path, leaf in flax.traverse_util.flatten_dict(tree).items():
    i = next((i for i, p in enumerate(path) if p.startswith("ConditionalBatchNorm")), None)
    if i is not None:  # drops the inner BatchNorm_0 of the statistics' path
      path = path[:i] + (path[i].replace("Conditional", ""), path[-1])
      leaf = leaf[row] if leaf.ndim == 2 else leaf
    out[path] = leaf
  return flax.traverse_util.unflatten_dict(out)


@pytest.mark.parametrize("size,g_mult,d_mult,norm", [(32, (1, 1, 1, 1), (1, 1, 1, 1), "none"),
                                                     (64, (8, 8, 4, 2, 1), (1, 2, 4, 8, 8),
                                                      "layer")])
def test_shapes(size, g_mult, d_mult, norm):
  # Shapes only (eval_shape): the 64x64 networks are slow to run on CPU.
  g = conditional.ConditionalResNetGenerator(size, dim=8, multipliers=g_mult)
  gv = jax.eval_shape(g.init, jax.random.PRNGKey(0), Z, LABELS)
  images = jax.eval_shape(lambda v: g.apply(v, Z, LABELS, train=False), gv)
  assert images.shape == (4, size, size, 3)
  block = gv["params"]["ResidualBlock_0"]
  assert block["ConditionalBatchNorm_0"]["scale"].shape == (10, 8 * g_mult[0])
  assert block["ConditionalBatchNorm_1"]["bias"].shape == (10, 8 * g_mult[1])
  assert "BatchNorm_0" in gv["params"]  # the output norm is unconditional
  for head, classes in (("acgan", 10), ("projection", 0)):
    d = conditional.ConditionalResNetCritic(size, dim=8, multipliers=d_mult, norm=norm, head=head)
    dv = jax.eval_shape(d.init, jax.random.PRNGKey(1), images, LABELS)
    f, logits = jax.eval_shape(lambda v, x: d.apply(v, x, LABELS), dv, images)
    assert f.shape == (4,) and logits.shape == (4, classes)
    assert "batch_stats" not in dv


def test_generator_images_depend_on_label_only_through_the_class_tables(generator):
  g, v = generator
  z = jnp.repeat(Z[:1], 4, axis=0)  # one noise vector, labels 0, 3, 9, 3
  # At init every class has scale 1 and offset 0: the label changes nothing.
  same = g.apply(v, z, LABELS, train=False)
  np.testing.assert_array_equal(same[0], same[1])
  trained = {**v, "params": _with_class_tables(v["params"], jax.random.PRNGKey(3))}
  images = g.apply(trained, z, LABELS, train=False)
  assert images.shape == (4, 32, 32, 3)
  assert float(jnp.abs(images).max()) <= 1.0
  np.testing.assert_array_equal(images[1], images[3])  # same z, same label
  for a, b in ((0, 1), (0, 2), (1, 2)):
    assert float(jnp.abs(images[a] - images[b]).mean()) > 1e-3
  # The same (z, label) gives the same image in another call and batch.
  again = g.apply(trained, jnp.concatenate([Z[1:], Z[:1]]), jnp.array([9, 0, 0, 3]), train=False)
  np.testing.assert_allclose(again[3], images[1], atol=1e-6)


def test_generator_at_init_is_the_unconditional_generator(generator):
  g, v = generator
  plain = resnet.ResNetGenerator(32, dim=8)
  # tflib.ops.cond_batchnorm: offsets start at zeros, scales at ones, every class.
  tables = {path: leaf for path, leaf in flax.traverse_util.flatten_dict(v["params"]).items()
            if "ConditionalBatchNorm" in path[-2]}
  assert len(tables) == 3 * 2 * 2
  for path, leaf in tables.items():
    assert leaf.shape == (10, 8)
    np.testing.assert_array_equal(leaf, np.ones((10, 8)) if path[-1] == "scale" else 0.0)
  u = _as_unconditional(v)
  assert jax.tree.map(jnp.shape, u) == \
      jax.tree.map(jnp.shape, jax.eval_shape(plain.init, jax.random.PRNGKey(0), Z))
  ours, ours_stats = g.apply(v, Z, LABELS, train=True, mutable=["batch_stats"])
  theirs, their_stats = plain.apply(u, Z, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(ours, theirs)
  jax.tree.map(np.testing.assert_array_equal, _as_unconditional(ours_stats), their_stats)
  # Any tables whose rows are all equal: the unconditional net with that affine map.
  key = jax.random.PRNGKey(5)
  flat = flax.traverse_util.flatten_dict(v["params"])
  for i, path in enumerate(p for p in flat if "ConditionalBatchNorm" in p[-2]):
    row = jax.random.normal(jax.random.fold_in(key, i), flat[path].shape[1:])
    flat[path] = jnp.broadcast_to(flat[path][0] + 0.5 * row, flat[path].shape)
  shared = {**v, "params": flax.traverse_util.unflatten_dict(flat)}
  np.testing.assert_allclose(
      g.apply(shared, Z, LABELS, train=True, mutable=["batch_stats"])[0],
      plain.apply(_as_unconditional(shared), Z, train=True, mutable=["batch_stats"])[0],
      atol=1e-5)


def test_one_class_offset_changes_only_that_class(generator):
  g, v = generator
  v = {**v, "params": _with_class_tables(v["params"], jax.random.PRNGKey(7))}
  params = jax.tree.map(jnp.asarray, v["params"])  # new dicts
  norm = params["ResidualBlock_1"]["ConditionalBatchNorm_0"]
  norm["bias"] = norm["bias"].at[3].add(1.0)
  moved = {**v, "params": params}
  before = g.apply(v, Z, LABELS, train=False)
  after = g.apply(moved, Z, LABELS, train=False)
  is_3 = np.asarray(LABELS) == 3
  np.testing.assert_array_equal(before[~is_3], after[~is_3])
  assert float(jnp.abs(before[is_3] - after[is_3]).mean()) > 1e-3
  # In training mode the batch's moments mix the classes: the others move too.
  before = g.apply(v, Z, LABELS, train=True, mutable=["batch_stats"])[0]
  after = g.apply(moved, Z, LABELS, train=True, mutable=["batch_stats"])[0]
  assert float(jnp.abs(before[~is_3] - after[~is_3]).max()) > 1e-6


def test_embedding_conditioning_starts_as_the_table_one_and_parts_the_classes_faster():
  tables = conditional.ConditionalResNetGenerator(32, dim=8)
  shared = conditional.ConditionalResNetGenerator(32, dim=8, conditioning="embedding")
  v = shared.init(jax.random.PRNGKey(2), Z, LABELS)
  flat = flax.traverse_util.flatten_dict(v["params"])
  # One embedding of 128 numbers a class, and per norm two [128, C] maps, zero at init.
  assert flat[("class_embedding", "embedding")].shape == (10, conditional.EMBEDDING_DIM)
  maps = {p: a for p, a in flat.items() if len(p) > 2 and "EmbeddedConditionalBatchNorm" in p[-3]}
  assert len(maps) == 3 * 2 * 2 and all(a.shape == (128, 8) and not a.any()
                                        for a in maps.values())
  # At init: the same images as the table generator's with the same other weights.
  body = {p: a for p, a in flat.items() if p[0] != "class_embedding" and p not in maps}
  t = tables.init(jax.random.PRNGKey(2), Z, LABELS)
  t_body = {p: a for p, a in flax.traverse_util.flatten_dict(t["params"]).items()
            if "ConditionalBatchNorm" not in p[-2]}
  assert sorted(body) == sorted(t_body)
  t_params = flax.traverse_util.unflatten_dict(
      {**flax.traverse_util.flatten_dict(t["params"]), **body})
  np.testing.assert_allclose(shared.apply(v, Z, LABELS, train=False),
                             tables.apply({**t, "params": t_params}, Z, LABELS, train=False),
                             atol=1e-6)
  # Adam moves every parameter by about lr a step, whatever its gradient (sign steps
  # here). A table's class scale moves by lr; one fed by the embedding by ~100 lr.
  def one_sign_step(model, variables):  # on the mean of the second image (class 3)
    def image(params):
      return jnp.mean(model.apply({**variables, "params": params}, Z, LABELS, train=False)[1])
    grads = jax.grad(image)(variables["params"])
    return jax.tree.map(lambda p, g: p + 1e-3 * jnp.sign(g), variables["params"], grads)
  moved = flax.traverse_util.flatten_dict(one_sign_step(shared, v))
  norm = next(p for p in maps if p[-2] == "scale")
  e = moved[("class_embedding", "embedding")][3]
  change = float(jnp.abs(e @ moved[norm] - flat[("class_embedding", "embedding")][3]
                         @ flat[norm]).max())
  assert change > 30 * 1e-3  # one step of 1e-3 moved a class scale by more than 30 steps'
  t_moved = flax.traverse_util.flatten_dict(one_sign_step(tables, t))
  t_norm = next(p for p in t_moved if p[-1] == "scale" and "ConditionalBatchNorm" in p[-2])
  assert float(jnp.abs(t_moved[t_norm][3] - 1.0).max()) <= 1e-3 + 1e-7


def test_conditioning_names_are_checked():
  with pytest.raises(ValueError, match="conditioning 'x' is unknown; use one of table, embedding"):
    conditional.ConditionalResNetGenerator(32, dim=8, conditioning="x").init(
        jax.random.PRNGKey(0), Z, LABELS)


def test_batch_stats_update_in_train_mode_only(generator):
  g, v = generator
  stats = v["batch_stats"]
  assert set(stats["ResidualBlock_0"]) == {"ConditionalBatchNorm_0", "ConditionalBatchNorm_1"}
  _, new = g.apply(v, Z, LABELS, train=True, mutable=["batch_stats"])
  for old, updated in zip(jax.tree.leaves(stats), jax.tree.leaves(new["batch_stats"])):
    assert float(jnp.abs(updated - old).max()) > 1e-4
  # momentum 0.9: running mean = 0.1 x the batch mean (from 0).
  mean = new["batch_stats"]["BatchNorm_0"]["mean"]
  _, inter = g.apply(v, Z, LABELS, train=True, mutable=["batch_stats", "intermediates"],
                     capture_intermediates=lambda m, _: isinstance(m, resnet.ResidualBlock))
  last = inter["intermediates"]["ResidualBlock_2"]["__call__"][0]
  np.testing.assert_allclose(mean, 0.1 * last.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  _, kept = g.apply(v, Z, LABELS, train=False, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, kept["batch_stats"], stats)


def test_conditional_batch_norm_under_pmap_uses_global_statistics():
  cbn = conditional.ConditionalBatchNorm(10, axis_name="batch")
  single = conditional.ConditionalBatchNorm(10)
  x = jax.random.normal(jax.random.PRNGKey(9), (4, 2, 2, 3)) * 2 + 1
  v = single.init(jax.random.PRNGKey(0), x, LABELS, True)
  v = {**v, "params": jax.tree.map(lambda a: a + jnp.arange(10.0)[:, None] / 10, v["params"])}
  want, want_stats = single.apply(v, x, LABELS, True, mutable=["batch_stats"])
  rep = jax.tree.map(lambda a: jnp.stack([a, a]), v)
  got, got_stats = jax.pmap(
      lambda v, x, y: cbn.apply(v, x, y, True, mutable=["batch_stats"]), axis_name="batch")(
          rep, x.reshape(2, 2, 2, 2, 3), LABELS.reshape(2, 2))
  np.testing.assert_allclose(got.reshape(x.shape), want, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6),
               got_stats, want_stats)
  # Per-class affine map applied to the normalised input.
  n = (x - x.mean(axis=(0, 1, 2))) / jnp.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
  p = v["params"]
  np.testing.assert_allclose(want, n * p["scale"][LABELS][:, None, None] +
                             p["bias"][LABELS][:, None, None], rtol=1e-4, atol=1e-5)


def test_projection_head_adds_the_label_embedding_dot_features(projection):
  d, v = projection
  other = jnp.array([5, 5, 1, 0], jnp.int32)

  def run(y):
    (f, logits), state = d.apply(v, X, y, mutable=["intermediates"])
    return f, logits, state["intermediates"]["features"][0]

  f, logits, h = run(LABELS)
  f_other, _, h_other = run(other)
  assert logits.shape == (4, 0) and h.shape == (4, 8)
  np.testing.assert_array_equal(h, h_other)  # the body does not read the label
  embed = v["params"]["Embed_0"]["embedding"]
  assert embed.shape == (10, 8)
  np.testing.assert_allclose(f - f_other, jnp.sum((embed[LABELS] - embed[other]) * h, -1),
                             rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(f - f_other).min()) > 1e-5
  out = v["params"]["Dense_0"]
  np.testing.assert_allclose(f, (h @ out["kernel"])[:, 0] + out["bias"][0] +
                             jnp.sum(embed[LABELS] * h, -1), rtol=1e-5, atol=1e-6)


def test_projection_embedding_is_glorot_uniform(projection):
  # sngan_projection: SNEmbedID(n_classes, ch, initialW=GlorotUniform()).
  d = conditional.ConditionalResNetCritic(32, dim=8, num_classes=200, head="projection")
  dv = d.init(jax.random.PRNGKey(11), X, LABELS)  # body shapes as the fixture's: cached
  embed = dv["params"]["Embed_0"]["embedding"]
  assert embed.shape == (200, 8)
  assert float(jnp.abs(embed).max()) <= np.sqrt(6 / (200 + 8))
  assert float(jnp.std(embed)) == pytest.approx(np.sqrt(2 / (200 + 8)), rel=0.1)


def test_acgan_head_logits_and_losses():
  d = conditional.ConditionalResNetCritic(32, dim=8, head="acgan")
  v = d.init(jax.random.PRNGKey(12), X, LABELS)
  (f, logits), state = d.apply(v, X, LABELS, mutable=["intermediates"])
  f2, logits2 = d.apply(v, X, jnp.zeros_like(LABELS))
  np.testing.assert_array_equal(f, f2)  # labels are not read (ACGAN)
  np.testing.assert_array_equal(logits, logits2)
  assert f.shape == (4,) and logits.shape == (4, 10)
  h = state["intermediates"]["features"][0]
  head = v["params"]["Dense_1"]
  np.testing.assert_allclose(logits, h @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6)

  logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
  labels = jnp.array([0, 1, 2], jnp.int32)
  z = np.log(np.exp(np.asarray(logits, np.float64)).sum(axis=1))
  want = np.mean(z - np.asarray(logits, np.float64)[np.arange(3), [0, 1, 2]])
  out = terms.CriticOutput(jnp.zeros(3), logits)
  view = terms.CriticView(real=None, fake=None, labels=labels, on_real=out, on_fake=out,
                          critic_at=None, params=None, opt_state=None)
  value, metrics = terms.acgan_critic(1.0).loss(view, None)
  assert float(value) == pytest.approx(want, rel=1e-6)
  # Arg-maxes 0, 2, 0 against labels 0, 1, 2.
  assert float(metrics["acgan_real_accuracy"]) == pytest.approx(1 / 3)
  assert float(terms.accuracy(logits, labels)) == pytest.approx(1 / 3)
  # The weights as gan_cifar_resnet.py's, from the config (cifar10_resnet_acgan's), and
  # Odena et al.'s equal ones on the digits.
  from wgan_jax import configs  # pylint: disable=import-outside-toplevel
  for experiment, weights in (("cifar10_resnet_acgan", (1.0, 0.1)),
                              ("digits_resnet_acgan", (1.0, 1.0))):
    config = configs.load(experiment)
    built = (terms.CRITIC_TERMS["acgan"](config, {}, None),
             terms.GENERATOR_TERMS["acgan"](config, {}, None))
    assert tuple(t.weight for t in built) == weights, experiment


def test_cifar_parameter_counts_are_gan_cifar_resnets():
  """gan_cifar_resnet.py, CONDITIONAL=ACGAN=True, DIM_G=DIM_D=128, 10 classes.
  Generator: Input linear 128*2048 + 2048 = 264,192; per up block: 1x1
  shortcut 128*128 + 128 = 16,512, two 3x3 convs 9*128*128 + 128 = 147,584
  each, two cond batch norms with offset and scale [10, 128] = 2,560 each:
  316,800, x3 = 950,400; OutputN (unconditional) offset + scale 256; Output
  conv 9*128*3 + 3 = 3,459: 1,218,307 trainable (the reference's printed total
  adds OutputN's never-updated moving mean and variance, 256).
  Critic: block 1 shortcut 3*128 + 128 = 512, convs 27*128 + 128 = 3,584 and
  147,584; block 2 (down) 16,512 + 2 * 147,584; blocks 3, 4 2 * 147,584 each:
  1,053,696; Output 128 + 1 = 129; ACGANOutput 128*10 + 10 = 1,290: 1,055,115."""
  g = conditional.ConditionalResNetGenerator(32, dim=128)
  gv = jax.eval_shape(g.init, jax.random.PRNGKey(0), Z[:1], LABELS[:1])
  assert _count(gv["params"]) == 1_218_307
  # Running mean and variance for each batch norm (the reference keeps none
  # for conditional batch norm: it always uses batch statistics).
  assert _count(gv["batch_stats"]) == (3 * 2 + 1) * 2 * 128
  images = jnp.zeros((1, 32, 32, 3))
  for head, want in (("acgan", 1_055_115), ("projection", 1_053_825 + 10 * 128)):
    d = conditional.ConditionalResNetCritic(32, dim=128, head=head)
    assert _count(jax.eval_shape(d.init, jax.random.PRNGKey(0), images, LABELS[:1])) == want


def test_bad_head_and_rules():
  d = conditional.ConditionalResNetCritic(32, dim=8, head="concat")
  with pytest.raises(ValueError, match="head 'concat' is unknown"):
    d.init(jax.random.PRNGKey(0), X[:1], LABELS[:1])
  assert conditional.HEADS == ("acgan", "projection")
  assert registry.CONDITIONAL_CRITIC_RULES["head"]("concat") is not None
  assert registry.CONDITIONAL_CRITIC_RULES["head"]("projection") is None
  for rules in (registry.CONDITIONAL_GENERATOR_RULES, registry.CONDITIONAL_CRITIC_RULES):
    assert rules["num_classes"](0) is not None and rules["num_classes"](10) is None
    assert set(registry.RESNET_GENERATOR_RULES) <= set(rules)

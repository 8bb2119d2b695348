"""Properties of the BANSA core (anse_lib.bansa)."""
import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anse_lib import bansa as B
from anse_lib import kernel


@pytest.fixture(params=["torch", "auto"])
def backend(request, monkeypatch):
    """Run a chunked-scorer test with the PyTorch arithmetic and with the default (compiled here)."""
    monkeypatch.setattr(B, "BACKEND", request.param)
    return request.param


def random_attention(shape, seed=0, temperature=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=g) / temperature, dim=-1)


def qk(b=2, h=3, nq=20, nk=24, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, nq, d, generator=g), torch.randn(b, h, nk, d, generator=g)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(2, 9))


# --- the exact BALD form ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=shapes, k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_bansa_nonnegative(shape, k, seed):
    samples = random_attention((k, *shape), seed)
    assert (B.bansa_rows_from_samples(samples) >= 0).all()


@settings(max_examples=30, deadline=None)
@given(shape=shapes, k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_bansa_zero_when_samples_equal(shape, k, seed):
    one = random_attention(shape, seed)
    samples = one.expand(k, *shape)
    assert torch.allclose(B.bansa_from_samples(samples), torch.zeros(shape[:-2]), atol=1e-7)


def test_bansa_positive_when_samples_differ():
    samples = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # K=2, one row each
    assert B.bansa_from_samples(samples).item() == pytest.approx(math.log(2), abs=1e-7)


def test_hand_computed_2x3_example():
    # K = 2 samples of a 2-row, 3-key map.
    s1 = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    s2 = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    # row 0: mean = (0.5, 0.25, 0.25): H = 1.5 ln 2; each sample H = ln 2 -> JSD = 0.5 ln 2
    # row 1: identical samples -> 0.  BANSA = mean over rows = 0.25 ln 2
    rows = B.bansa_rows_from_samples(torch.stack([s1, s2]))
    assert rows.tolist() == pytest.approx([0.5 * math.log(2), 0.0], abs=1e-7)
    assert B.bansa_from_samples(torch.stack([s1, s2])).item() == pytest.approx(0.25 * math.log(2), abs=1e-7)
    assert B.attention_entropy(s1).item() == pytest.approx(0.5 * math.log(2), abs=1e-7)


def test_row_entropy_safe_at_zero():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    h = B.row_entropy(p)
    assert torch.isfinite(h).all()
    assert h.tolist() == pytest.approx([0.0, math.log(2)], abs=1e-7)


# --- Bernoulli masks ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 3), nq=st.integers(1, 6), nk=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_invariant_to_permuting_keys_jointly_with_masks(h, nq, nk, seed):
    attn = random_attention((h, nq, nk), seed)
    masks = B.keep_masks(4, torch.arange(h), torch.arange(nq), nk, 0.3, seed).float()
    perm = torch.randperm(nk, generator=torch.Generator().manual_seed(seed))
    rows, _ = B._bansa_rows_block(attn[None].double(), masks.double())
    rows_p, _ = B._bansa_rows_block(attn[None][..., perm].double(), masks[..., perm].double())
    assert torch.allclose(rows, rows_p, atol=1e-10)
    # and the explicit-samples form agrees with the streamed block form
    samples, _ = B._masked_sample(attn.unsqueeze(0), masks.bool())
    assert torch.allclose(B.bansa_rows_from_samples(samples).double(), rows[0], atol=1e-6)


def test_keep_fraction_matches_drop_prob():
    for p in (0.2, 0.5, 0.8):
        m = B.keep_masks(10, torch.arange(4), torch.arange(64), 256, p, seed=3)
        assert m.float().mean().item() == pytest.approx(1 - p, abs=0.01)


def test_masks_are_a_function_of_their_coordinates():
    full = B.keep_masks(5, torch.arange(4), torch.arange(30), 17, 0.2, seed=11, salt=2)
    part = B.keep_masks(5, torch.tensor([2, 3]), torch.tensor([7, 8, 29]), 17, 0.2, seed=11, salt=2)
    assert torch.equal(full[:, 2:4][:, :, [7, 8, 29]], part)
    other_salt = B.keep_masks(5, torch.arange(4), torch.arange(30), 17, 0.2, seed=11, salt=3)
    assert not torch.equal(full, other_salt)


def test_same_generator_seed_bit_identical():
    attn = random_attention((2, 3, 10, 12))
    r1 = B.bansa_bernoulli(attn, k=6, generator=torch.Generator().manual_seed(5))
    r2 = B.bansa_bernoulli(attn, k=6, generator=torch.Generator().manual_seed(5))
    r3 = B.bansa_bernoulli(attn, k=6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(r1.rows, r2.rows)
    assert not torch.equal(r1.rows, r3.rows)
    q, k = qk()
    c1, c2 = (B.bansa_chunked(q, k, k=6, seed=9, block_rows=7) for _ in range(2))
    assert torch.equal(c1.rows, c2.rows)


@pytest.mark.usefixtures("backend")
def test_empty_rows_guarded_and_counted():
    # one-hot rows lose all their mass whenever their single key is dropped
    attn = torch.eye(8).unsqueeze(0)
    res = B.bansa_bernoulli(attn, k=10, drop_prob=0.5, seed=1)
    assert torch.isfinite(res.rows).all()
    assert res.empty_rows.item() > 0
    # an emptied one-hot row falls back to itself, so all samples equal: BANSA 0
    assert torch.allclose(res.rows, torch.zeros_like(res.rows))
    c = B.bansa_chunked(probs=attn.unsqueeze(0), k=10, drop_prob=0.5, seed=1)
    assert c.empty_rows.sum().item() == res.empty_rows.item()


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direct_form_equals_entropy_difference_with_some_samples_empty(dtype):
    """The scorer's one-log form -sum a w log w - mean log Z equals H(mean) - mean H on
    rows where some (not all) samples lose their mass, and on exact zeros."""
    g = torch.Generator().manual_seed(5)
    probs = torch.zeros(2, 3, 16, 9)
    for i in range(16):  # rows with 1 to 4 nonzero keys
        support = torch.randperm(9, generator=g)[: 1 + i % 4]
        probs[:, :, i, support] = torch.rand(2, 3, len(support), generator=g) + 0.1
    probs /= probs.sum(-1, keepdim=True)
    naive = B.bansa_bernoulli(probs, k=7, drop_prob=0.6, seed=2)
    got = B.bansa_chunked(probs=probs, k=7, drop_prob=0.6, seed=2, block_rows=11, accumulate_dtype=dtype)
    assert 0 < naive.empty_rows.sum() < 2 * 3 * 16 * 7
    assert torch.equal(got.empty_rows, naive.empty_rows)
    assert torch.allclose(got.rows, naive.rows, atol=1e-6 if dtype == torch.float32 else 1e-7, rtol=0)


@pytest.mark.usefixtures("backend")
# --- chunked == naive -------------------------------------------------------------------------------
@pytest.mark.parametrize("block_rows", [1, 5, 20, 60, 10_000])
def test_chunked_equals_naive(block_rows):
    q, k = qk()
    probs = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1)
    naive = B.bansa_bernoulli(probs, k=10, drop_prob=0.2, seed=42)
    chunked = B.bansa_chunked(q, k, k=10, drop_prob=0.2, seed=42, block_rows=block_rows)
    assert chunked.rows.shape == naive.rows.shape == (2, 3, 20)
    assert torch.allclose(chunked.rows, naive.rows, atol=1e-6, rtol=0)
    assert torch.equal(chunked.empty_rows, naive.empty_rows)
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    from_logits = B.bansa_chunked(logits=logits, k=10, seed=42, block_rows=block_rows)
    from_probs = B.bansa_chunked(probs=probs, k=10, seed=42, block_rows=block_rows)
    assert torch.allclose(from_logits.rows, naive.rows, atol=1e-6, rtol=0)
    assert torch.allclose(from_probs.rows, naive.rows, atol=1e-6, rtol=0)


@pytest.mark.usefixtures("backend")
def test_chunked_batch_entries_share_masks():
    """A candidate's score does not depend on which other candidates share its batch."""
    q, k = qk(b=4)
    together = B.bansa_chunked(q, k, k=8, seed=3)
    for i in range(4):
        alone = B.bansa_chunked(q[i : i + 1], k[i : i + 1], k=8, seed=3)
        assert torch.allclose(alone.rows, together.rows[i : i + 1], atol=1e-7)
    # identical inputs in two batch slots give identical scores (common random numbers)
    twice = B.bansa_chunked(torch.cat([q[:1], q[:1]]), torch.cat([k[:1], k[:1]]), k=8, seed=3)
    assert torch.equal(twice.rows[0], twice.rows[1])


@pytest.mark.usefixtures("backend")
def test_chunked_mask_and_query_rows():
    q, k = qk(nq=12, nk=12)
    allowed = torch.ones(12, 12, dtype=torch.bool).tril()  # causal mask
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1)
    naive = B.bansa_bernoulli(probs, k=5, seed=0)
    got = B.bansa_chunked(q, k, attn_mask=allowed, k=5, seed=0, block_rows=5)
    assert torch.allclose(got.rows, naive.rows, atol=1e-6)
    additive = torch.zeros(12, 12).masked_fill(~allowed, float("-inf"))
    assert torch.allclose(B.bansa_chunked(q, k, attn_mask=additive, k=5, seed=0).rows, naive.rows, atol=1e-6)
    sub = B.bansa_chunked(q, k, attn_mask=allowed, k=5, seed=0, query_rows=slice(4, 12))
    assert torch.allclose(sub.rows, naive.rows[..., 4:], atol=1e-6)


@pytest.mark.usefixtures("backend")
def test_row_sample_scores_a_fixed_subset_of_the_full_rows():
    """Subsampled rows are exactly those rows of the full computation, the same for every
    candidate and head, fixed by (seed, salt); their mean is an unbiased estimate."""
    q, k = qk(b=3, nq=40, nk=24)
    full = B.bansa_chunked(q, k, k=6, seed=9, salt=2)
    sub = B.bansa_chunked(q, k, k=6, seed=9, salt=2, row_sample=7, block_rows=4)
    picked = B.sample_query_rows(torch.arange(40), 7, seed=9, salt=2)
    assert sub.rows.shape == (3, 3, 7) and picked.tolist() == sorted(set(picked.tolist()))
    assert torch.allclose(sub.rows, full.rows[..., picked], atol=1e-6, rtol=0)
    one = B.bansa_chunked(q[1:2], k[1:2], k=6, seed=9, salt=2, row_sample=7)
    assert torch.allclose(one.rows, sub.rows[1:2], atol=1e-7)
    assert not torch.equal(B.sample_query_rows(torch.arange(40), 7, seed=9, salt=3), picked)  # per layer
    # within selected query rows, and all of them when asking for more than there are
    video = B.bansa_chunked(q, k, k=6, seed=9, salt=2, query_rows=slice(10, 40), row_sample=5)
    assert set(B.sample_query_rows(torch.arange(10, 40), 5, 9, 2).tolist()) <= set(range(10, 40))
    assert torch.allclose(video.rows, full.rows[..., B.sample_query_rows(torch.arange(10, 40), 5, 9, 2)], atol=1e-6)
    assert torch.allclose(B.bansa_chunked(q, k, k=6, seed=9, salt=2, row_sample=99).rows, full.rows, atol=1e-7)
    # unbiased: over many subsets (seeds) the mean of subset means is the full mean
    subset_means = [B.sample_query_rows(torch.arange(40), 7, s).float().mean() for s in range(2000)]
    assert abs(float(torch.stack(subset_means).mean()) - 19.5) < 0.2


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_row_sample_rejected_unless_positive_int(bad):
    q, k = qk()
    with pytest.raises(ValueError, match=f"row_sample must be an int >= 1.*{bad!r}"):
        B.bansa_chunked(q, k, row_sample=bad)


@pytest.mark.usefixtures("backend")
def test_block_bytes_bounds_the_block_and_does_not_change_scores():
    q, k = qk(b=2, nq=30, nk=50)
    ref = B.bansa_chunked(q, k, k=5, seed=1)
    shared, per_entry = B.block_bytes_per_row(5, 50, torch.float64)
    assert shared == 50 * (5 * 9 + 32) and per_entry == 50 * (12 + 48)
    for budget in (1, shared + per_entry, 3 * (shared + 2 * per_entry), 1 << 30):
        assert torch.allclose(B.bansa_chunked(q, k, k=5, seed=1, block_bytes=budget).rows, ref.rows, atol=1e-7)
    with pytest.raises(ValueError, match="block_bytes must be an int >= 1.*0"):
        B.bansa_chunked(q, k, block_bytes=0)


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_computed_in_float32(dtype):
    q, k = qk()
    got = B.bansa_chunked(q.to(dtype), k.to(dtype), k=6, seed=1)
    ref = B.bansa_chunked(q.to(dtype).float(), k.to(dtype).float(), k=6, seed=1)
    assert got.rows.dtype == torch.float32
    assert torch.equal(got.rows, ref.rows)
    attn = random_attention((3, 10, 12)).to(dtype)
    h = B.attention_entropy(attn)
    assert h.dtype == torch.float32
    assert torch.allclose(h, B.attention_entropy(attn.float()))
    # the naive path renormalises nothing in half precision either
    assert B.bansa_bernoulli(attn, k=4, seed=0, drop_prob=0.2).rows.dtype == torch.float32


def test_mc_dropout_reference_matches_explicit_samples():
    base = random_attention((2, 5, 7), seed=3)
    samples = [random_attention((2, 5, 7), seed=10 + i) for i in range(4)]
    got = B.bansa_mc_dropout(lambda i: samples[i], k=4)
    assert torch.allclose(got, B.bansa_from_samples(torch.stack(samples)))
    assert B.bansa_mc_dropout(lambda i: base, k=3).abs().max() < 1e-7


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_k", [1, 0, -3, 2.5, True])
def test_k_below_two_rejected(bad_k):
    attn = random_attention((4, 5))
    with pytest.raises(ValueError, match=r"k .*>= 2.*got"):
        B.bansa_bernoulli(attn, k=bad_k)
    q, k = qk()
    with pytest.raises(ValueError, match=r">= 2"):
        B.bansa_chunked(q, k, k=bad_k)


def test_single_sample_rejected_in_bald_form():
    with pytest.raises(ValueError, match="got 1"):
        B.bansa_from_samples(random_attention((1, 4, 5)))


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_drop_prob_outside_open_unit_interval_rejected(p):
    with pytest.raises(ValueError, match=r"drop_prob .*\(0, 1\).*got"):
        B.bansa_bernoulli(random_attention((4, 5)), drop_prob=p)


def test_non_finite_and_non_normalised_rejected():
    attn = random_attention((4, 5))
    bad = attn.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        B.bansa_bernoulli(bad)
    with pytest.raises(ValueError, match="sum to 1 within"):
        B.bansa_bernoulli(attn * 1.1)
    q, k = qk()
    q[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="query has non-finite"):
        B.bansa_chunked(q, k)
    q[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="query has non-finite"):
        B.bansa_chunked(q, k)
    # finite entries whose sum overflows float32 are accepted
    assert torch.isinf(torch.full_like(q, 1e36).sum())
    B.bansa_chunked(torch.full_like(q, 1e36), k)
    with pytest.raises(ValueError, match="exactly one of"):
        B.bansa_chunked(q, k, logits=q)
    with pytest.raises(ValueError, match="does not broadcast"):
        B.bansa_chunked(*qk(), attn_mask=torch.ones(5, 5, dtype=torch.bool))


def test_mask_cache_bounded():
    cache = B._MaskCache(max_bytes=10 * 1 * 3 * 8 * 2)  # room for two boolean (K=10, 1 head, 3 rows, 8 keys) blocks
    for seed in range(5):
        cache.get(10, range(0, 1), torch.arange(3), 8, 0.2, seed, 0)
        assert cache._bytes <= cache.max_bytes
    assert len(cache._store) == 2
    np.testing.assert_array_equal(
        cache.get(10, range(0, 1), torch.arange(3), 8, 0.2, 4, 0).numpy(),
        B.keep_masks(10, torch.arange(1), torch.arange(3), 8, 0.2, 4).numpy(),
    )


# --- the compiled scorer ------------------------------------------------------------------
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="no gcc: the scorer falls back to PyTorch (tested by the torch-backend tests)")


@needs_gcc
def test_compiled_scorer_builds_here():
    """Where gcc is, the compiled scorer builds; without it the default falls back to PyTorch."""
    assert kernel.available(), kernel.build_error()
    if not kernel._lib.bansa_openmp():
        pytest.skip("gcc without OpenMP here: the compiled scorer splits rows over its own thread pool")


@needs_gcc
def test_compiled_scorer_same_rows_however_threaded(monkeypatch):
    """Rows are independent: one thread, torch's OpenMP threads, or (a build without
    OpenMP) a pool of Python threads give bit-identical scores."""
    q, key = qk(b=2, h=3, nq=33, nk=41, d=8, seed=5)
    kw = dict(k=10, seed=2, backend="compiled", block_rows=40)
    ref = B.bansa_chunked(q, key, **kw)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = B.bansa_chunked(q, key, **kw)
    finally:
        torch.set_num_threads(threads)
    plain = kernel._load(kernel._compile("gcc", kernel.FLAGS))
    assert plain.bansa_openmp() == 0
    monkeypatch.setattr(kernel, "_lib", plain)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # force the pool split
    pooled = B.bansa_chunked(q, key, **kw)
    assert torch.equal(one.rows, ref.rows) and torch.equal(pooled.rows, ref.rows)
    assert torch.equal(one.empty_rows, ref.empty_rows) and torch.equal(pooled.empty_rows, ref.empty_rows)


@pytest.mark.parametrize("k,drop_prob", [(2, 0.5), (10, 0.2), (13, 0.9), (32, 0.2)])
def test_compiled_equals_torch_backend(k, drop_prob):
    """Same masks, same arithmetic: equal empty counts, rows equal to float rounding, with
    a boolean mask, sampled rows and odd block shapes; and bit-identical when re-run."""
    q, key = qk(b=3, h=2, nq=40, nk=37, d=8, seed=4)
    allowed = torch.rand(40, 37, generator=torch.Generator().manual_seed(1)) > 0.3
    kw = dict(k=k, drop_prob=drop_prob, seed=11, salt=3, attn_mask=allowed, row_sample=29, block_rows=17)
    ref = B.bansa_chunked(q * 3, key, backend="torch", **kw)
    got = B.bansa_chunked(q * 3, key, backend="compiled", **kw)
    assert torch.equal(got.empty_rows, ref.empty_rows)
    assert torch.allclose(got.rows, ref.rows, atol=2e-6, rtol=0)
    assert torch.equal(B.bansa_chunked(q * 3, key, backend="compiled", **kw).rows, got.rows)


def test_backend_choice_validated():
    q, key = qk()
    with pytest.raises(ValueError, match="backend must be one of .*'fast'"):
        B.bansa_chunked(q, key, backend="fast")
    with pytest.raises(ValueError, match="accumulate_dtype=torch.float32.*torch.float64"):
        B.bansa_chunked(q, key, backend="compiled", accumulate_dtype=torch.float64)
    with pytest.raises(ValueError, match="k <= 32.*k=33"):
        B.bansa_chunked(q, key, backend="compiled", k=33)
    # the default falls back to PyTorch where the compiled scorer does not apply
    auto = B.bansa_chunked(q, key, k=33, seed=1)
    assert torch.equal(auto.rows, B.bansa_chunked(q, key, k=33, seed=1, backend="torch").rows)


def test_chunked_independent_of_default_dtype(backend):
    """The reused logits buffer and the returned rows are float32 whatever torch's default dtype is."""
    q, key = qk()
    ref = B.bansa_chunked(q, key, k=5, seed=1)
    saved = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        got = B.bansa_chunked(q, key, k=5, seed=1)
    finally:
        torch.set_default_dtype(saved)
    assert got.rows.dtype == torch.float32 and torch.allclose(got.rows, ref.rows, atol=1e-7)


def test_torch_scorer_keeps_masks_and_results_on_its_device_no_host_copy_per_block(monkeypatch):
    """The GPU path (backend="torch") hashes masks on the scorer's device and copies results to
    the host once at the end: counted here on the CPU by spying on Tensor.cpu and Tensor.to."""
    g = torch.Generator().manual_seed(0)
    q, kk = torch.randn(2, 3, 40, 8, generator=g), torch.randn(2, 3, 40, 8, generator=g)
    want = B.bansa_chunked(q, kk, k=4, backend="torch")
    calls = {"cpu": 0, "to_device": 0}
    real_cpu, real_to = torch.Tensor.cpu, torch.Tensor.to

    def spy_cpu(self, *a, **kw):
        calls["cpu"] += 1
        return real_cpu(self, *a, **kw)

    def spy_to(self, *a, **kw):
        target = kw.get("device", next((x for x in a if isinstance(x, (str, torch.device))), None))
        if target is not None and torch.device(target) != self.device:  # a real copy between devices
            calls["to_device"] += 1
        return real_to(self, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    got = B.bansa_chunked(q, kk, k=4, backend="torch", block_rows=5)  # 48 blocks
    monkeypatch.undo()
    assert calls["cpu"] <= 2 and calls["to_device"] == 0, calls
    assert torch.allclose(got.rows, want.rows, atol=1e-6) and torch.equal(got.empty_rows, want.empty_rows)

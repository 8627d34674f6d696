"""Float64 NumPy attention, forward and backward, written straight from the formula.

Independent of the JAX code under test: its own masking, its own softmax and the
textbook softmax backward dS = P * (dP - rowsum(P * dP)).
"""

import numpy as np


def visible(b, n, tq, tk, *, mask=None, is_causal=False, q_lengths=None, kv_lengths=None,
            q_segment_ids=None, kv_segment_ids=None):
  allowed = np.ones((b, n, tq, tk), bool)
  i = np.arange(tq)[:, None]
  j = np.arange(tk)[None, :]
  if mask is not None:
    allowed &= np.broadcast_to(np.asarray(mask), allowed.shape)
  if is_causal:
    allowed &= (j <= i)[None, None]
  if q_lengths is not None:
    allowed &= (np.arange(tq)[None, :] < np.asarray(q_lengths)[:, None])[:, None, :, None]
  if kv_lengths is not None:
    allowed &= (np.arange(tk)[None, :] < np.asarray(kv_lengths)[:, None])[:, None, None, :]
  if q_segment_ids is not None:
    qs, ks = np.asarray(q_segment_ids), np.asarray(kv_segment_ids)
    allowed &= (qs[:, :, None] == ks[:, None, :])[:, None]
  return allowed


class Attention:
  """One forward pass in float64 that keeps what its backward pass needs."""

  def __init__(self, q, k, v, *, allowed, bias=None, alibi_slopes=None, scale=None,
               keep=None, dropout_rate=0.0):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, tq, n, h = q.shape
    tk, kh = k.shape[1], k.shape[2]
    self.groups = n // kh
    self.q, self.k_rep, self.v_rep = q, np.repeat(k, self.groups, 2), np.repeat(v, self.groups, 2)
    self.scale = 1.0 / np.sqrt(h) if scale is None else scale
    s = np.einsum('bqnh,bknh->bnqk', q, self.k_rep) * self.scale
    if bias is not None:
      s = s + np.asarray(bias, np.float64)
    if alibi_slopes is not None:
      dist = np.abs(np.arange(tq)[:, None] - np.arange(tk)[None, :])
      s = s - np.asarray(alibi_slopes, np.float64)[None, :, None, None] * dist
    s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    den = e.sum(-1, keepdims=True)
    self.p = e / np.where(den > 0, den, 1.0)
    self.drop = 1.0 if keep is None else np.where(np.asarray(keep), 1.0 / (1.0 - dropout_rate), 0.0)
    self.out = np.einsum('bnqk,bknv->bqnv', self.p * self.drop, self.v_rep)
    self.bias_shape = None if bias is None else np.shape(bias)

  def backward(self, d_out):
    d_out = np.asarray(d_out, np.float64)
    b, tk, n, _ = self.k_rep.shape
    dv_rep = np.einsum('bnqk,bqnv->bknv', self.p * self.drop, d_out)
    dp = np.einsum('bqnv,bknv->bnqk', d_out, self.v_rep) * self.drop
    ds = self.p * (dp - np.sum(self.p * dp, -1, keepdims=True))
    dq = np.einsum('bnqk,bknh->bqnh', ds, self.k_rep) * self.scale
    dk_rep = np.einsum('bnqk,bqnh->bknh', ds, self.q) * self.scale
    fold = lambda x: x.reshape(b, tk, n // self.groups, self.groups, -1).sum(3)
    dbias = None
    if self.bias_shape is not None:
      axes = tuple(a for a, s in enumerate(self.bias_shape) if s == 1)
      dbias = ds.sum(axis=axes, keepdims=True)
    return dq, fold(dk_rep), fold(dv_rep), dbias


def linear_attention(q, k, v, *, is_causal=False, q_lengths=None, kv_lengths=None):
  """phi(q)^T sum_j phi(k_j) v_j^T / phi(q)^T sum_j phi(k_j), phi = elu + 1, per position."""
  phi = lambda x: np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  b, tq, n, _ = q.shape
  g = n // k.shape[2]
  qf, kf, vr = phi(q), np.repeat(phi(k), g, 2), np.repeat(v, g, 2)
  w = np.einsum('bqnh,bknh->bnqk', qf, kf)
  allowed = visible(b, n, tq, k.shape[1], is_causal=is_causal, q_lengths=q_lengths,
                    kv_lengths=kv_lengths)
  w = np.where(allowed, w, 0.0)
  den = w.sum(-1)[..., None]
  out = np.einsum('bnqk,bknv->bnqv', w / np.where(den > 0, den, 1.0), vr)
  return out.transpose(0, 2, 1, 3)


def _mix32(x):
  """The 'lowbias32' finalizer on uint32 (wrapping arithmetic)."""
  x = x ^ (x >> np.uint32(16))
  x = x * np.uint32(0x7FEB352D)
  x = x ^ (x >> np.uint32(15))
  x = x * np.uint32(0x846CA68B)
  return x ^ (x >> np.uint32(16))


def dropout_keep(seed, rate, batch, num_heads, q_len, kv_len):
  """The attention-dropout contract, stated independently of the kernels: weight (b, n,
  i, j) is kept iff a 32-bit hash of (seed, b * num_heads + n, i, j) is at least
  rate * 2^32. [B, N, Tq, Tk] booleans."""
  s0, s1 = (np.uint32(x) for x in np.asarray(seed, np.uint32).reshape(-1)[:2])
  with np.errstate(over='ignore'):
    bn = np.arange(batch * num_heads, dtype=np.uint32).reshape(batch, num_heads)
    h = _mix32(_mix32(bn ^ s0) + s1)[:, :, None, None]
    rows = np.arange(q_len, dtype=np.uint32) * np.uint32(0x9E3779B9)
    cols = _mix32(np.arange(kv_len, dtype=np.uint32) + np.uint32(0x632BE5AB))
    h = _mix32(h ^ rows[:, None])
    h = _mix32(h ^ cols[None, :])
  return h >= np.uint32(min(int(rate * 2.0**32), 2**32 - 1))

"""Pooled-key/value attention with decomposed relative positions.

Every size-dependent quantity here is computed with tensor ops (arange, floor
division, gather) and every pad is unconditional, so both ONNX exporters keep
height and width symbolic (docs/facts.md, "Dynamic height and width"). No Python `if`, `int()` or
`max()` touches a tensor size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def adaptive_pool_matrix(length, out_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Matrix M (out_size, length) such that M @ x equals AdaptiveAvgPool1d(out_size) along x's first axis.

    Bin i averages positions [floor(i*L/n), ceil((i+1)*L/n)), the rule PyTorch's adaptive pooling uses.
    """
    positions = torch.arange(length, device=device)
    bins = torch.arange(out_size, device=device)
    start = torch.div(bins * length, out_size, rounding_mode="floor")
    end = torch.div((bins + 1) * length + (out_size - 1), out_size, rounding_mode="floor")
    inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def pool_to_grid(x: Tensor, out_size: int) -> Tensor:
    """Average-pool (N, H, W, C) to (N, out_size * out_size, C) with two matmuls.

    Equals nn.AdaptiveAvgPool2d(out_size), but exports with dynamic H and W.
    """
    rows = adaptive_pool_matrix(x.shape[1], out_size, x.device, x.dtype)
    cols = adaptive_pool_matrix(x.shape[2], out_size, x.device, x.dtype)
    x = x.permute(0, 3, 1, 2)
    x = torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
    return x.flatten(2).transpose(1, 2)


def get_rel_pos(q_size, k_size: int, rel_pos: Tensor) -> Tensor:
    """Relative-position embeddings (q_size, k_size, C), as segment_anything's get_rel_pos.

    Requires q_size >= k_size (the model's minimum input size guarantees it), which removes
    SAM's Python `max` and `if`: the table is always interpolated (a same-size linear resize
    is the identity) to 2 * q_size - 1 entries.
    """
    # A bilinear resize of a width-1 image is the 1-D linear resize, bit for bit, but exports as one ONNX
    # Resize; the 1-D form exports as index arithmetic with integer Clip, which TensorRT's parser refuses.
    table = F.interpolate(rel_pos.transpose(0, 1)[None, :, :, None], size=(2 * q_size - 1, 1), mode="bilinear")
    table = table[0, :, :, 0].transpose(0, 1)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None].to(torch.float32)
    # The ratio as a tensor, not a Python float, so the dynamo exporter keeps it symbolic.
    ratio = (q_coords[-1] + 1) / k_size
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * ratio
    relative = (q_coords - k_coords) + (k_size - 1) * ratio
    return table[relative.long()]


def add_decomposed_rel_pos(attn: Tensor, q: Tensor, rel_pos: tuple[Tensor, Tensor], q_size: tuple,
                           k_size: tuple[int, int]) -> Tensor:
    """Add MViTv2's decomposed relative positions to attn (B, qh*qw, kh*kw)."""
    q_h, q_w = q_size
    k_h, k_w = k_size
    rh = get_rel_pos(q_h, k_h, rel_pos[0])
    rw = get_rel_pos(q_w, k_w, rel_pos[1])
    batch, _, dim = q.shape
    r_q = q.reshape(batch, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
    attn = attn.view(batch, q_h, q_w, k_h, k_w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return attn.view(batch, q_h * q_w, k_h * k_w)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad (B, H, W, C) at the bottom and right so H and W divide by `multiple`; always pads (maybe by 0)."""
    pad_h = (multiple - x.shape[1] % multiple) % multiple
    pad_w = (multiple - x.shape[2] % multiple) % multiple
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, Hp, Wp, C) with Hp, Wp multiples of window -> (B * windows, window, window, C)."""
    _, hp, wp, c = x.shape
    x = x.reshape(-1, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_unpartition(windows: Tensor, window: int, padded_hw: tuple, hw: tuple) -> Tensor:
    """Inverse of window_partition, then crop the padding away: -> (B, H, W, C)."""
    hp, wp = padded_hw
    c = windows.shape[-1]
    x = windows.reshape(-1, hp // window, wp // window, window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, hp, wp, c)
    return x[:, : hw[0], : hw[1], :]


class PooledAttention(nn.Module):
    """Multi-head attention whose keys and values are average-pooled to a small grid.

    Cost grows linearly with the number of query tokens, which is what lets GSAM run
    at native resolution. Parameter names match SAM's Attention so its weights load.
    """

    def __init__(self, dim: int, num_heads: int, rel_pos_size: tuple[int, int], *, pooled_grid: int = 3,
                 window_size: int = 0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.pooled_grid = pooled_grid
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, self.head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """x: normalized tokens (B, H, W, C) -> (B, H, W, C)."""
        height, width = x.shape[1], x.shape[2]
        # The projection runs on real tokens only; padded window tokens get qkv(0) = bias,
        # exactly what SAM computes after padding, without paying for the padding.
        qkv = F.linear(x, self.qkv.weight)
        if self.window_size:
            qkv = pad_to_multiple(qkv, self.window_size)
            padded_hw = (qkv.shape[1], qkv.shape[2])
            qkv = window_partition(qkv, self.window_size)
        if self.qkv.bias is not None:
            qkv = qkv + self.qkv.bias
        out = self._attend(qkv)
        if self.window_size:
            out = window_unpartition(out, self.window_size, padded_hw, (height, width))
        return self.proj(out)

    def _attend(self, qkv: Tensor) -> Tensor:
        n, gh, gw, three_c = qkv.shape
        heads, hd = self.num_heads, self.head_dim
        qkv = qkv.reshape(n, gh * gw, 3, heads, hd).permute(2, 0, 3, 1, 4).reshape(3, -1, gh * gw, hd)
        q, k, v = qkv.unbind(0)
        k = pool_to_grid(k.reshape(-1, gh, gw, hd), self.pooled_grid)
        v = pool_to_grid(v.reshape(-1, gh, gw, hd), self.pooled_grid)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        grid = (self.pooled_grid, self.pooled_grid)
        attn = add_decomposed_rel_pos(attn, q, (self.rel_pos_h, self.rel_pos_w), (gh, gw), grid)
        out = attn.softmax(dim=-1) @ v
        return out.reshape(n, heads, gh, gw, hd).permute(0, 2, 3, 1, 4).reshape(n, gh, gw, heads * hd)

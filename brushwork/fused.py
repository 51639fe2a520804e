"""Hand-written backward passes that make one evaluation cheaper than autograd's.

Measured side by side on this project's 2-core CPUs (``brushwork bench``'s
``eval_ablation``; docs/benchmarks.md):

* ``G = F F^T`` is symmetric, so ``dF = (dG + dG^T) F`` is one matrix product where
  autograd's ``bmm`` backward does two and adds them (x1.08 per evaluation at 512 px).
* oneDNN's 3x3 convolutions run faster on channels-last (NHWC) tensors at the shallow,
  wide layers, so the extractor works in NHWC on the CPU and hands the image gradient
  back in NCHW (a further x1.09 to x1.15). The Gram backward returns its gradient in
  the features' own layout, or every later add and ReLU mask would be a strided copy.
* :func:`network_losses`: the content and style terms with one hand-written backward
  through the whole frozen network (on the CPU, for one image): no autograd graph,
  each Gram gradient summed into the travelling gradient by its own ``addmm``, ReLU
  masks in place, only input gradients, and the Gram matrix from oneDNN.
"""

from __future__ import annotations

from typing import Any

import torch


class _ChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()  # optimisers flatten the image's gradient with .view(-1)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in NHWC memory order; its gradient comes back in the usual NCHW order."""
    return _ChannelsLast.apply(x)


class _Gram(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        if flat.stride(1) == 1:
            # Features in NHWC: return dF in that order too, as F^T sym (sym is symmetric).
            return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, flat)


def gram_flat(flat: torch.Tensor) -> torch.Tensor:
    """``(B, N, M) -> (B, N, N)``: ``F F^T`` with a one-product backward."""
    return _Gram.apply(flat)


def _positions_by_channels(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(1, C, H, W) -> (H*W, C)`` for an NHWC tensor (True), else ``(C, H*W)`` (False);
    a view either way, never a copy."""
    if t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]), True
    return t.reshape(t.shape[1], -1), False


def _gram(f: torch.Tensor) -> torch.Tensor:
    """``(1, N, H, W) -> (N, N)`` in either layout.

    On the CPU it is computed as the weight gradient of a 1x1 convolution whose input
    and output gradient are both ``f`` (``dW[i, j] = sum_p f[i, p] f[j, p]``), which
    oneDNN runs at the convolutions' rate; MKL's product of these skinny matrices was
    up to 2x slower (64 channels at 512x437: 17.5 ms -> 8.5 ms, docs/benchmarks.md)."""
    if f.device.type == "cpu":
        n = f.shape[1]
        shape_only = f.new_empty(n, n, 1, 1)
        return torch.ops.aten.convolution_backward(
            f, f, shape_only, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1,
            (False, True, False))[1].view(n, n)
    flat, nhwc = _positions_by_channels(f)
    return flat.t() @ flat if nhwc else flat @ flat.t()


def _add_gram_grad(g: torch.Tensor | None, f: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """``g + dL/dF`` where ``dL/dF = sym F`` (``sym = dG + dG^T``), summed into ``g`` by the
    product itself (addmm) when the layouts allow: no separate pass for the sum."""
    flat, nhwc = _positions_by_channels(f)
    if g is not None:
        g_flat, g_nhwc = _positions_by_channels(g)
        if g_nhwc == nhwc:
            if nhwc:
                g_flat.addmm_(flat, sym)  # (M, N) += (M, N) (N, N)
            else:
                g_flat.addmm_(sym, flat)  # (N, M) += (N, N) (N, M)
            return g
    b, c, h, w = f.shape
    grad = (flat @ sym).view(b, h, w, c).permute(0, 3, 1, 2) if nhwc else (sym @ flat).view(f.shape)
    return grad if g is None else g.add_(grad)


class _NetworkLosses(torch.autograd.Function):
    """``(content, style) = losses(net(x))`` with a hand-written backward through the
    frozen network.

    The forward runs without autograd, keeping only what the backward needs
    (:meth:`brushwork.vgg.FeatureExtractor.record`).  The losses' own small gradients
    (with respect to each Gram matrix, and to the content features) are taken by
    autograd on leaves.  The backward then walks the network once: each Gram gradient
    is summed into the incoming gradient by its matrix product, ReLU masks are applied
    in place, and only the convolutions' input gradients are computed.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, objective: Any) -> tuple[torch.Tensor, torch.Tensor]:
        net = objective.net
        tape = net.record(x)
        feats = tape.features
        with torch.enable_grad():
            content_feats = {n: feats[n].detach().requires_grad_(True)
                             for n in objective.s.content_layers}
            grams = {n: _gram(feats[n]).requires_grad_(True) for n in objective.s.style_layers}
            content = objective.content_term(content_feats)
            style = objective.style_term(grams, {n: feats[n].shape for n in grams})
            leaves = list(content_feats.values())
            d_content = torch.autograd.grad(content, leaves) if leaves else []
            d_grams = torch.autograd.grad(style, list(grams.values()))
        ctx.tape = tape
        ctx.net = net
        ctx.content = dict(zip(content_feats, d_content))
        ctx.grams = dict(zip(grams, d_grams))
        return content.detach(), style.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_content: torch.Tensor, g_style: torch.Tensor) -> tuple:
        tape, gc, gs = ctx.tape, float(g_content), float(g_style)

        def add_grad(name: str, g: torch.Tensor | None) -> torch.Tensor | None:
            if name in ctx.grams:
                d = ctx.grams[name]
                g = _add_gram_grad(g, tape.features[name], (d + d.t()) * gs)
            if name in ctx.content:
                d = ctx.content[name]
                g = d.mul_(gc) if g is None else g.add_(d, alpha=gc)
            return g

        grad = ctx.net.backward(tape, add_grad)
        del ctx.tape, ctx.content, ctx.grams
        return grad, None


def network_losses(x: torch.Tensor, objective: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``objective``'s content and style terms (before alpha and beta) at ``x``, with the
    hand-written backward of :class:`_NetworkLosses`."""
    return _NetworkLosses.apply(x, objective)

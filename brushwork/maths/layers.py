"""Layer names of the VGG convolutional stacks (Simonyan & Zisserman, 2014).

Only the convolutional part is used; the fully connected layers are dropped, as in
Gatys et al.  Names follow the paper: ``conv{block}_{index}``, ``relu{block}_{index}``
and ``pool{block}``.
"""

from __future__ import annotations

# Number of 3x3 convolutions in each of the five blocks, and their width.
BLOCKS: dict[str, tuple[int, ...]] = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)


def conv_names(arch: str) -> list[str]:
    """``['conv1_1', 'conv1_2', 'conv2_1', ...]`` for ``arch`` in :data:`BLOCKS`."""
    return [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS[arch]) for i in range(n)]


def layer_names(arch: str) -> list[str]:
    """Every addressable layer in order: conv, relu and pool names."""
    names: list[str] = []
    for b, n in enumerate(BLOCKS[arch]):
        for i in range(n):
            names += [f"conv{b + 1}_{i + 1}", f"relu{b + 1}_{i + 1}"]
        names.append(f"pool{b + 1}")
    return names


def arch_for_conv_count(count: int) -> str | None:
    """The architecture with ``count`` convolutions (13 -> vgg16, 16 -> vgg19)."""
    for arch, blocks in BLOCKS.items():
        if sum(blocks) == count:
            return arch
    return None

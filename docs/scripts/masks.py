"""Figures for docs/masks.md: a photo split between two paintings by masks, measured.

    python docs/scripts/masks.py PHOTO PAINTING_A PAINTING_B [--size 384] [--mode resize inside]
                         [--split vertical|horizontal] [--at 0.5] [--keep-photo]
                         [--out docs/images/masks]

Writes the two masks (PNG: the left/top part for painting A, the rest for B, with a soft
edge ``--feather`` px wide), and with ``--keep-photo`` a third region in the middle that
stays the photo; then paints the photo once per ``--mode`` and writes, per mode, the
picture and a strip (photo | regions | picture | the two paintings) as JPEG.

It prints, per mode and region, the region's Gram distance to its own painting and to
the other painting, and their ratio (below 1: the region is nearer its own).  The
distance is the style loss of the paper at the run's style layers (1/L each), of the
region's guided Gram matrix against the painting's per-position one, with the region's
"inside" masks (positions whose receptive field lies wholly in the region), whatever
mode painted it, so no position near the border counts for either side.  The photo
itself is measured the same way, as the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import brushwork
from brushwork.engine.cache import Cache
from brushwork.engine.objective import style_grams
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.maths.losses import style_layer_loss
from brushwork.maths.regions import guided_grams, guides

_cache = Cache()


def split_masks(size: tuple[int, int], split: str, at: float, feather: int,
                keep_photo: bool) -> list[np.ndarray]:
    """Masks (H, W) in 0..1 for painting A and painting B, with a soft edge; with
    ``keep_photo``, a band around the border that neither covers (the photo's own)."""
    w, h = size
    length = w if split == "vertical" else h
    pos = np.arange(length, dtype=np.float64)
    cut = at * length
    a = np.clip((cut - pos) / max(feather, 1) + 0.5, 0, 1)  # 1 before the cut, 0 after
    b = 1 - a
    if keep_photo:  # a photo band a sixth of the side wide, centred on the cut
        band = length / 12
        a = np.clip((cut - band - pos) / max(feather, 1) + 0.5, 0, 1)
        b = np.clip((pos - cut - band) / max(feather, 1) + 0.5, 0, 1)
    if split == "vertical":
        return [np.broadcast_to(m[None, :], (h, w)) for m in (a, b)]
    return [np.broadcast_to(m[:, None], (h, w)) for m in (a, b)]


def save_mask(mask: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.rint(mask * 255).astype(np.uint8)).save(path)
    return path


def region_distances(picture: Image.Image, paintings: list[Image.Image],
                     masks: torch.Tensor, settings: Settings) -> list[list[float]]:
    """``[region][painting]``: the region's guided-Gram style distance to each painting
    (the module docstring), at the picture's size."""
    net = _cache.network(settings, torch.device("cpu"))
    layers = settings.style_layers
    x = to_tensor(picture)
    long_side = round(settings.style_scale * max(picture.size))
    targets = [style_grams(net, to_tensor(resize_to(p, scaled_size(p.size, long_side))), layers)
               for p in paintings]
    w, h = picture.size
    inside = guides(torch.nn.functional.interpolate(masks, size=(h, w), mode="bilinear",
                                                    antialias=True).clamp(0, 1),
                    net.steps, layers, "inside")
    with torch.no_grad():
        feats = net(x)
    out = []
    for r in range(masks.shape[0]):
        row = []
        for target in targets:
            total = 0.0
            for name, guide, t in zip(layers, inside, target, strict=True):
                area = guide.areas[r]
                if area <= 0:
                    continue
                g = guided_grams(feats[name], guide.roots[r:r + 1])[0]
                total += float(style_layer_loss(g, t * area, g.shape[0], area)) / len(layers)
            row.append(total)
        out.append(row)
    return out


def strip(images: list[Image.Image], height: int) -> Image.Image:
    scaled = [im.convert("RGB").resize((round(im.width * height / im.height), height),
                                       Image.Resampling.LANCZOS) for im in images]
    out = Image.new("RGB", (sum(s.width for s in scaled) + 4 * (len(scaled) - 1), height),
                    "white")
    x = 0
    for s in scaled:
        out.paste(s, (x, 0))
        x += s.width + 4
    return out


def regions_picture(photo: Image.Image, masks: list[np.ndarray]) -> Image.Image:
    """The photo, greyed, tinted red where painting A goes and blue where B goes."""
    grey = np.asarray(photo.convert("L").convert("RGB"), dtype=np.float64) * 0.6
    tint = np.zeros_like(grey)
    for mask, colour in zip(masks, ((255, 60, 40), (40, 90, 255)), strict=True):
        tint += mask[..., None] * np.array(colour, dtype=np.float64)
    cover = np.clip(np.sum(masks, axis=0), 0, 1)[..., None]
    out = grey * (1 - 0.5 * cover) + 0.5 * tint
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo")
    p.add_argument("painting_a")
    p.add_argument("painting_b")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--mode", nargs="+", default=["resize", "inside"])
    p.add_argument("--split", choices=("vertical", "horizontal"), default="vertical")
    p.add_argument("--at", type=float, default=0.5, help="where the cut is, 0..1")
    p.add_argument("--feather", type=int, default=8, help="soft edge, in the photo's px")
    p.add_argument("--keep-photo", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/images/masks")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = load_image(args.photo)
    paintings = [load_image(args.painting_a), load_image(args.painting_b)]
    masks = split_masks(photo.size, args.split, args.at, args.feather, args.keep_photo)
    stem = f"{Path(args.photo).stem}_{Path(args.painting_a).stem}_{Path(args.painting_b).stem}"
    suffix = "_keep" if args.keep_photo else ""
    paths = [save_mask(m, out / f"{stem}{suffix}_mask_{k}.png") for k, m in
             zip("ab", masks, strict=True)]
    mask_t = torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]
    small = resize_to(photo, scaled_size(photo.size, args.size))
    base = Settings(size=args.size)
    print(f"photo {args.photo} ({photo.size[0]}x{photo.size[1]}), A {args.painting_a}, "
          f"B {args.painting_b}, masks {paths[0]}, {paths[1]}")
    print(f"{'picture':<16}{'region':<8}{'to A':>10}{'to B':>10}{'own/other':>11}")

    def report(label: str, picture: Image.Image) -> bool:
        d = region_distances(picture, paintings, mask_t, base)
        ok = True
        for r, name in enumerate("AB"):
            own, other = d[r][r], d[r][1 - r]
            ok = ok and own < other
            print(f"{label:<16}{name:<8}{d[r][0]:>10.4g}{d[r][1]:>10.4g}{own / other:>11.3f}")
        return ok

    report("photo", small)
    all_ok = True
    for mode in args.mode:
        start = time.perf_counter()
        result = brushwork.stylize(args.photo, [args.painting_a, args.painting_b],
                                   cache=_cache, size=args.size, seed=args.seed,
                                   style_masks=[str(q) for q in paths], mask_mode=mode)
        name = f"{stem}{suffix}_{mode}_{args.size}"
        result.image.save(out / f"{name}.jpg", quality=88)
        strip([photo, regions_picture(photo, masks), result.image, *paintings],
              height=min(200, result.image.height)).save(out / f"{name}_strip.jpg",
                                                        quality=85)
        all_ok = report(f"{mode} ({time.perf_counter() - start:.0f} s)", result.image) and all_ok
        print(f"  brushwork stylize {args.photo} {args.painting_a} {args.painting_b} "
              f"--size {args.size} --seed {args.seed} --style-masks {paths[0]},{paths[1]} "
              f"--mask-mode {mode} -o {out / name}.jpg")
    print("each region nearer its own painting:", "yes" if all_ok else "NO")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())

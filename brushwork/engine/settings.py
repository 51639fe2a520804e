"""Every option of a stylize run and its default, in one place.

The Python API (`brushwork.stylize(**options)`), the CLI (its flags and --help) and
the settings recorded beside each output are all derived from :class:`Settings`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, TypeVar

from brushwork.engine.precision import PRECISIONS
from brushwork.errors import BrushworkError
from brushwork.io.images import BIT_DEPTHS, DEFAULT_MAX_PIXELS
from brushwork.io.masks import parse_color
from brushwork.maths.distributions import STYLE_LOSSES
from brushwork.maths.losses import CONTENT_NORMS, STYLE_NORMS
from brushwork.maths.photoreal import PHOTOREAL_BARE, PHOTOREAL_METHODS
from brushwork.maths.regions import MASK_MODES
from brushwork.maths.strength import DEFAULT_STRENGTH, KNOBS, knobs

T = TypeVar("T")

OPTIMIZERS = ("lbfgs", "adam", "sgd")
COLOR_MODES = ("none", "luminance", "histogram", "histogram-to-style")
MULTISCALE_MODES = ("auto", "on", "off")
PAPER_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Per-optimiser default step size, in pixel units (0..255); the Keras example used SGD at
# 100 on raw (unnormalised) gradients of its own tiny loss weights.
DEFAULT_LR = {"adam": 4.0, "sgd": 2.0}
# Bounds on options whose size sets memory or time, wherever a run comes from.
# L-BFGS keeps 2 image-sized vectors per pair: neural-style's 100 is already generous,
# and the memory plan tries each smaller history in turn, so the bound keeps that short.
MAX_HISTORY = 1000
# The style image is resized to style_scale times the output's long side; past a few
# times it is mostly memory (100 at 512 px asks for a 51200 px painting).
MAX_STYLE_SCALE = 4.0
# A PNG records pixels per metre in 32 bits; past this nothing prints anyway.
MAX_DPI = 100_000
# A tileable picture's sides at every scale are multiples of this: the stride of relu5_1,
# the deepest layer, so that each pooling tiles the torus.
TILEABLE_MULTIPLE = 16
# What a torch.Generator takes (and a signed 64-bit integer holds, as SQLite stores it).
MAX_SEED = 2**63 - 1


def _opt(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
         choices: tuple[str, ...] | None = None, cli: bool = True, shown: str | None = None,
         bare: str | None = None) -> Any:
    """A settings field; ``shown`` is how --help words a default of None; ``bare``: the
    value of a choice flag given with none (``--photoreal`` alone)."""
    meta = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "cli": cli,
            "shown": shown, "bare": bare}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # Output and schedule.
    size: int = _opt(512, "long side of the output in pixels", metavar="PX")
    iterations: int = _opt(
        150, "optimiser evaluations at the final scale (coarser scales get twice as many)",
        metavar="N")
    # How painted the picture is; it sets the four knobs marked "from --strength"
    # (brushwork/maths/strength.py).  Given alone, a knob overrides the default strength's value.
    strength: float | None = _opt(
        None, "how painted, from 0 (almost the photo) to 1 (the painting's strokes and "
        "colours over the photo's composition); sets --content-weight, --style-weight, "
        "--min-size and --photo-detail, which may be given instead",
        metavar="S", shown=f"{DEFAULT_STRENGTH}, unless one of those is given")
    # The objective: L_total = alpha * L_content + beta * L_style + tv_weight * L_tv.
    content_weight: float | None = _opt(None, "alpha, the weight of the content loss",
                                        metavar="A", shown="from --strength")
    size_invariant: bool = _opt(
        True, "keep the content/style balance of a 256 px preview at every size: alpha is "
        "scaled by (256 / long side)^2, since the paper's content loss grows with the pixel "
        "count and its style loss does not; off = the paper's raw alpha")
    style_weight: float | None = _opt(None, "beta, the weight of the style loss", metavar="B",
                                      shown="1e4")
    tv_weight: float = _opt(0.0, "weight of the total-variation smoothness loss", metavar="W")
    tv_power: float = _opt(
        1.0, "exponent of the TV loss: 1 = squared gradients, 1.25 = the Keras example's",
        metavar="P")
    # brushwork.maths.structure; docs/structure.md has the calibration and the pictures.
    structure: float = _opt(
        0.0, "weight of the structure loss (Li et al. 2017): the picture's Laplacian, on "
        "grids of about 128 and 32 positions, held to the photo's, so skies and walls stay "
        "smooth and edges stay where they are; 1 = the calibrated strong setting, 0 = off",
        metavar="W")
    # brushwork.io.faces finds them, brushwork.maths.faces weights them; docs/structure.md.
    keep_faces: bool = _opt(
        False, "find faces in the photo (OpenCV's face detector, the 'faces' extra) and "
        "raise the content and structure terms inside them, with a soft edge, so eyes, "
        "nose and mouth stay where they are")
    # brushwork.maths.photoreal, MattingTerm in brushwork.engine.objective; docs/photoreal.md.
    photoreal: str = _opt(
        "off", "make the result a photograph in the style photo's colours and light, not a "
        "painting: matting = Luan et al.'s matting-Laplacian term keeps it, window by "
        "window, an affine recolouring of the photo while it is optimised; filter = the "
        "painted result smoothed after the run by a guided filter led by the photo "
        f"(FastPhotoStyle's step); both; a bare --photoreal is {PHOTOREAL_BARE}",
        choices=PHOTOREAL_METHODS, bare=PHOTOREAL_BARE)
    matting_weight: float = _opt(
        1.0, "weight of --photoreal's matting term (matting, both): 1 = the calibrated "
        "setting, higher = closer to a recolouring of the photo", metavar="W")
    style_weights: tuple[float, ...] | None = _opt(
        None, "blend weights, one per style image", metavar="W,W,...", shown="equal")
    style_scale: float = _opt(
        1.0, "style image's long side relative to the output's; larger = bigger brush strokes",
        metavar="S")
    # Departure from the paper (conv4_2 alone): on the default edge-tuned network relu4_2
    # alone loses thin structures (the rocket's gantries in docs/images); adding relu3_2
    # keeps them while the strokes stay. --content-layers relu4_2 is the paper's choice.
    content_layers: tuple[str, ...] = _opt(
        ("relu3_2", "relu4_2"),
        "layers for the content loss (the paper's conv4_2 alone is relu4_2 here)",
        metavar="L,L,...")
    style_layers: tuple[str, ...] = _opt(PAPER_STYLE_LAYERS, "layers for the style loss",
                                         metavar="L,L,...")
    style_layer_weights: tuple[float, ...] | None = _opt(
        None, "w_l, one per style layer", metavar="W,W,...",
        shown="1/number of layers, as in the paper")
    content_norm: str = _opt("paper", "content loss normalisation: paper = 1/2 sum, "
                             "sum = the Keras example's, mean = the PyTorch tutorial's",
                             choices=CONTENT_NORMS)
    style_norm: str = _opt("paper", "style loss normalisation: paper = 1/(4 N^2 M^2), "
                           "mean = the PyTorch tutorial's, keras = the Keras example's",
                           choices=STYLE_NORMS)
    # brushwork.engine.style_terms, brushwork.maths.distributions; docs/style-losses.md.
    style_loss: str = _opt(
        "gram", "the style statistic: gram = the paper's Gram matrices; w2 = Wasserstein-2 "
        "between Gaussian fits of the features (means and covariances); sliced = sliced "
        "Wasserstein, the features' whole distributions along random projections (no tiles, "
        "no masks)", choices=STYLE_LOSSES)
    # The optimiser.
    optimizer: str = _opt("lbfgs", "lbfgs, adam, or sgd (with an exponentially decaying rate, "
                          "as in the Keras example)",
                          choices=OPTIMIZERS)
    learning_rate: float | None = _opt(
        None, "step size for adam/sgd in pixel units", metavar="LR", flag="--lr",
        shown="adam 4, sgd 2")
    lr_decay: float = _opt(0.96, "sgd: multiply the rate by this every --lr-decay-steps",
                           metavar="F")
    lr_decay_steps: int = _opt(100, "sgd: steps per decay", metavar="N")
    # 20, not neural-style's 100: measured equal loss and look at 256 and 512 px, a little
    # faster, and a fifth of the memory (2.0 GB -> 0.4 GB at 1024 px); docs/benchmarks.md.
    history_size: int = _opt(20, "lbfgs: number of past gradients kept", metavar="N")
    stop_tolerance: float = _opt(
        0.0, "end a scale early once the picture changes less than this many grey levels "
        "(of 255) per step, averaged over the last 10 steps; 0 = run every iteration",
        metavar="T")
    # The default's effect on time and loss: docs/benchmarks.md, "Coarse scales that stop".
    coarse_tolerance: float = _opt(
        0.25, "--stop-tolerance for the pyramid's coarse scales: end one once its picture "
        "changes less than this many grey levels per step, averaged over the last 10 steps "
        "(the finer scale repaints what it would still change); 0 = run every iteration",
        metavar="T")
    normalize_gradients: bool = _opt(
        True, "scale the objective so the first gradient averages 1 per pixel (no minimum "
        "changes; L-BFGS needs it); off = raw step sizes, e.g. to reproduce the Keras "
        "example's SGD")
    init: str = _opt("content", "starting image: content, noise, or a path to an image",
                     metavar="INIT")
    # Around the algorithm.
    preserve_colors: str = _opt(
        "none", "luminance = keep the photo's colours; histogram = recolour the painting to "
        "the photo's palette first; histogram-to-style = recolour the photo to the painting's",
        choices=COLOR_MODES)
    # Which style goes where (brushwork.io.masks, brushwork.maths.regions; docs/masks.md).
    style_masks: tuple[str, ...] | None = _opt(
        None, "one mask image per style image, in their order: white = that style paints "
        "there, black = not, grey = a soft share; where no mask is white the photo is kept",
        metavar="M,M,...", shown="none: the styles blend over the whole picture")
    region_map: str | None = _opt(
        None, "instead of --style-masks, one colour-coded map of the regions (the photo's "
        "shape), with --region-colors; other colours keep the photo", metavar="PATH",
        shown="none")
    region_colors: tuple[str, ...] | None = _opt(
        None, "the colour of each style image's region in --region-map, in their order",
        metavar="#RRGGBB,...", shown="none")
    mask_mode: str = _opt(
        "resize", "how a region's mask reaches each layer: resize = averaged down to the "
        "layer's grid (soft borders); inside = also eroded by the layer's receptive field, so "
        "a region's style sees only its own pixels (the paper's 'inside' masks)",
        choices=MASK_MODES)
    multiscale: str = _opt("auto", "coarse-to-fine pyramid: auto = when size >= 2 * --min-size",
                           choices=MULTISCALE_MODES)
    min_size: int | None = _opt(None, "long side of the coarsest pyramid scale (the scales "
                                "halve the output's long side down to it)", metavar="PX",
                                shown="from --strength")
    photo_detail: float | None = _opt(
        None, "share of the photo's fine detail carried into each finer pyramid scale: "
        "1 = all of it (the photo's edges stay sharp), 0 = none (the coarse scale's strokes "
        "are enlarged and the content loss alone brings detail back)", metavar="D",
        shown="from --strength")
    # brushwork.maths.torus, FeatureExtractor.forward's wrap; docs/texture.md.
    tileable: bool = _opt(
        False, "paint a picture that repeats with no seam: the network sees it as a torus "
        "(each convolution pads from the opposite edge); its sides are rounded to "
        f"multiples of {TILEABLE_MULTIPLE} px at every scale")
    model: str = _opt("vgg16-hed", "weights: a source name (see `brushwork models`) or a file",
                      metavar="NAME|PATH")
    pooling: str = _opt("max", "pooling in the network: max or avg (the paper prefers avg)",
                        choices=("max", "avg"))
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps",
                       metavar="DEV")
    # brushwork.engine.precision; docs/benchmarks.md, "Precision".
    precision: str = _opt(
        "auto", "the network's arithmetic: auto = bf16 where the device has it natively (a "
        "CPU with AMX or AVX512-BF16, a CUDA GPU that supports it), else fp32; the picture, "
        "the optimiser and every loss stay fp32", choices=PRECISIONS)
    seed: int | None = _opt(None, "random seed, for reproducible runs on one machine", metavar="N",
                            shown="random")
    max_pixels: int = _opt(DEFAULT_MAX_PIXELS, "refuse input images with more pixels than this",
                           metavar="N")
    # Print size (brushwork.engine.memory, brushwork.engine.tiling).
    max_memory: float | None = _opt(
        None, "memory budget for the run's peak, in GB (RAM on the CPU, GPU memory on a "
        "GPU); a scale that would not fit whole is painted in tiles, exactly, with no seams",
        metavar="GB", shown="four fifths of the memory available")
    tile_size: int | None = _opt(
        None, "paint scales larger than PX in tiles of PX (a multiple of 16, at least the "
        "network's halo of 80 px)", metavar="PX", shown="tiles only where the budget needs them")

    # Files for print (brushwork.io.images.save_image, brushwork.io.deep): every picture
    # carries the sRGB profile; these two say how deep and how large it prints.
    bit_depth: int = _opt(
        8, "bits per channel of the written picture: 8, or 16 for print (PNG and TIFF "
        "only; the optimised picture's gradations, which 8 bits band in smooth skies)",
        metavar="8|16")
    dpi: float | None = _opt(
        None, "the resolution recorded in the file, in dots per inch, so that it prints at "
        "its width / DPI inches (e.g. 300)", metavar="DPI", shown="none recorded")

    def __post_init__(self) -> None:
        validate(self)
        for name, value in resolve_strength(self).items():
            object.__setattr__(self, name, value)

    @staticmethod
    def normalise(options: Mapping[str, Any]) -> dict[str, Any]:
        """Options as Settings holds them: lists (JSON's, a caller's) as tuples.  The one
        place that turns a plan row, a request or a sweep cell into Settings' form."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **changes: Any) -> Settings:
        """Validated settings from ``options`` (lists accepted) with ``changes`` on top."""
        return cls(**cls.normalise({**options, **changes}))

    def to_dict(self) -> dict[str, Any]:
        """JSON's form (tuples as lists): what is recorded beside every picture."""
        return json_options(asdict(self))

    def knob(self, name: str) -> float:
        """The resolved value of one of the knobs strength sets (never None once built)."""
        value = getattr(self, name) if name in KNOBS else None
        if value is None:
            raise KeyError(f"{name!r} is not a resolved strength knob")
        return value


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BrushworkError(f"{name} must be a positive integer, not {value!r}")


def _weight(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise BrushworkError(f"{name} must be {kind} finite number, not {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BrushworkError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_kinds(s: Settings) -> None:
    """Strings and lists of the type their option needs, before anything iterates them or
    opens a file by them: a plan row or a library caller may pass any value (``model=5``).
    Numbers and booleans are checked with their bounds below."""
    for f in fields(s):
        kind, optional = _KINDS[str(f.type)]
        value = getattr(s, f.name)
        if value is None and optional:
            continue
        if kind == "str" and not isinstance(value, str):
            raise BrushworkError(f"{f.name} must be a string, not {value!r}")
        if kind in ("strs", "floats") and (
                not isinstance(value, (tuple, list))
                or (kind == "strs" and not all(isinstance(v, str) for v in value))):
            what = "strings" if kind == "strs" else "numbers"
            raise BrushworkError(f"{f.name} must be a list of {what}, not {value!r}")


def validate(s: Settings) -> None:
    """Raise BrushworkError naming the first bad option and its value."""
    _check_kinds(s)
    for name in ("size", "iterations", "lr_decay_steps", "history_size", "max_pixels"):
        _positive_int(name, getattr(s, name))
    for name in ("min_size", "tile_size"):
        if getattr(s, name) is not None:
            _positive_int(name, getattr(s, name))
    if s.max_memory is not None:
        _weight("max_memory", s.max_memory, positive=True)
    if s.bit_depth not in BIT_DEPTHS or isinstance(s.bit_depth, bool):
        raise BrushworkError(f"bit_depth must be one of {', '.join(map(str, BIT_DEPTHS))}, "
                             f"not {s.bit_depth!r}")
    if s.dpi is not None:
        _weight("dpi", s.dpi, positive=True)
        if s.dpi > MAX_DPI:
            raise BrushworkError(f"dpi must be at most {MAX_DPI}, not {s.dpi!r}")
    for name in ("tv_weight", "structure", "matting_weight", "stop_tolerance",
                 "coarse_tolerance"):
        _weight(name, getattr(s, name))
    for name in ("content_weight", "style_weight"):
        if getattr(s, name) is not None:
            _weight(name, getattr(s, name))
    for name in ("strength", "photo_detail"):
        value = getattr(s, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 1):  # NaN fails the comparison too
            raise BrushworkError(f"{name} must be a number from 0 to 1, not {value!r}")
    for name in ("style_scale", "tv_power", "lr_decay"):
        _weight(name, getattr(s, name), positive=True)
    if s.style_scale > MAX_STYLE_SCALE:
        raise BrushworkError(f"style_scale must be at most {MAX_STYLE_SCALE:g}, not "
                             f"{s.style_scale!r}")
    if s.history_size > MAX_HISTORY:
        raise BrushworkError(f"history_size must be at most {MAX_HISTORY}, not "
                             f"{s.history_size!r}")
    for name in ("normalize_gradients", "size_invariant", "tileable", "keep_faces"):
        if not isinstance(getattr(s, name), bool):
            raise BrushworkError(f"{name} must be True or False, not {getattr(s, name)!r}")
    if s.learning_rate is not None:
        _weight("learning_rate", s.learning_rate, positive=True)
    for name in ("style_weights", "style_layer_weights"):
        values = getattr(s, name)
        if values is not None:
            if not values:
                raise BrushworkError(f"{name} must not be empty")
            for v in values:
                _weight(name, v)
            if sum(values) <= 0:
                raise BrushworkError(f"{name} must not all be zero: {list(values)}")
    if s.style_layer_weights is not None and len(s.style_layer_weights) != len(s.style_layers):
        raise BrushworkError(
            f"style_layer_weights has {len(s.style_layer_weights)} values for "
            f"{len(s.style_layers)} style layers")
    for name in ("content_layers", "style_layers"):
        layers = getattr(s, name)
        if not layers:
            raise BrushworkError(f"{name} must name at least one layer")
        for i, layer in enumerate(layers):
            if layer in layers[:i]:  # each entry keeps its own targets: a repeat costs memory
                raise BrushworkError(f"{name} names {layer!r} more than once")
    _check_regions(s)
    _choice("optimizer", s.optimizer, OPTIMIZERS)
    _choice("preserve_colors", s.preserve_colors, COLOR_MODES)
    _choice("multiscale", s.multiscale, MULTISCALE_MODES)
    _choice("pooling", s.pooling, ("max", "avg"))
    _choice("precision", s.precision, PRECISIONS)
    _choice("content_norm", s.content_norm, CONTENT_NORMS)
    _choice("style_norm", s.style_norm, STYLE_NORMS)
    _choice("style_loss", s.style_loss, STYLE_LOSSES)
    _choice("photoreal", s.photoreal, PHOTOREAL_METHODS)
    if not isinstance(s.init, str) or not s.init:
        raise BrushworkError(f"init must be 'content', 'noise' or an image file, not {s.init!r}")
    if s.seed is not None and (isinstance(s.seed, bool) or not isinstance(s.seed, int)
                               or not 0 <= s.seed <= MAX_SEED):
        raise BrushworkError(f"seed must be an integer from 0 to {MAX_SEED}, not {s.seed!r}")


def _check_regions(s: Settings) -> None:
    _choice("mask_mode", s.mask_mode, MASK_MODES)
    for name in ("style_masks", "region_colors"):
        values = getattr(s, name)
        if values is not None and (not values or not all(isinstance(v, str) and v
                                                          for v in values)):
            raise BrushworkError(f"{name} must be a list of "
                                 f"{'files' if name == 'style_masks' else 'colours'}, "
                                 f"not {values!r}")
    if s.region_map is not None and (not isinstance(s.region_map, str) or not s.region_map):
        raise BrushworkError(f"region_map must be an image file, not {s.region_map!r}")
    if s.style_masks is not None and s.region_map is not None:
        raise BrushworkError("give style_masks or region_map, not both")
    if s.tileable and (s.style_masks is not None or s.region_map is not None):
        # A region is a place in the photo, and a tileable picture has no edges to hold it.
        raise BrushworkError("tileable takes no style_masks or region_map: regions belong to "
                             "a photo's layout, which a repeating picture does not keep")
    if s.region_colors is not None:
        if s.region_map is None:
            raise BrushworkError("region_colors needs region_map, the map they colour")
        for color in s.region_colors:
            parse_color(color)
    elif s.region_map is not None:
        raise BrushworkError("region_map needs region_colors, one colour per style image")


def resolve_strength(s: Settings) -> dict[str, Any]:
    """The values of the knobs that strength sets, for the ones left unset.

    An explicit strength fills them all and refuses a knob given beside it with
    another value; without one, the knobs not given take the default strength's
    values, and strength is recorded as the default only when none was given.
    """
    given = {k: getattr(s, k) for k in KNOBS if getattr(s, k) is not None}
    if s.strength is not None:
        implied = knobs(s.strength)
        for name, value in given.items():
            if not math.isclose(value, implied[name], rel_tol=1e-9):
                raise BrushworkError(
                    f"strength {s.strength:g} sets {name} to {implied[name]:.4g}, and {name} "
                    f"{value!r} contradicts it; give strength or {name}, not both")
        return {**implied, **given}
    out: dict[str, Any] = {**knobs(DEFAULT_STRENGTH), **given}
    if not given:
        out["strength"] = DEFAULT_STRENGTH
    return out


def json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` in JSON's form: tuples as lists (the inverse of Settings.normalise)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def parse_list(text: str, kind: Callable[[str], T] = str) -> tuple[T, ...]:  # type: ignore[assignment]
    """A comma-separated list as ``kind`` values, blanks skipped: ``"1, 2,"`` -> (1, 2).
    The one reader of lists for the CLI's flags and a plan file's cells; ValueError
    from ``kind`` on a bad item."""
    return tuple(kind(part.strip()) for part in str(text).split(",") if part.strip())


def option_fields() -> list[Field[Any]]:
    """The dataclass fields, in declaration order, for the CLI."""
    return [f for f in fields(Settings) if f.metadata.get("cli", True)]


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    assert f.default_factory is not MISSING
    return f.default_factory()


def flag_of(f: Field[Any]) -> str:
    """The CLI flag of a settings field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


# A field's annotation (a string: this module postpones annotations) -> (kind, optional).
_KINDS: dict[str, tuple[str, bool]] = {
    "int": ("int", False), "int | None": ("int", True),
    "float": ("float", False), "float | None": ("float", True),
    "bool": ("bool", False), "str": ("str", False), "str | None": ("str", True),
    "tuple[str, ...]": ("strs", False), "tuple[str, ...] | None": ("strs", True),
    "tuple[float, ...] | None": ("floats", True),
}


@dataclass(frozen=True)
class OptionSpec:
    """One option of a run, as the CLI and the web studio present it.

    ``kind`` is one of int, float, bool, str, strs (a list of names) or floats (a list
    of numbers); ``optional`` says whether None is allowed (Settings then decides).
    """

    name: str
    kind: str
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None
    flag: str
    metavar: str | None
    shown: str | None  # how --help words a default of None
    cli: bool
    bare: str | None = None  # a choice flag's value when given alone


def option_specs() -> list[OptionSpec]:
    """Every Settings field, in declaration order, with its type, default and help."""
    specs = []
    for f in fields(Settings):
        annotation = str(f.type)
        if annotation not in _KINDS:  # a new field of a new type: teach _KINDS first
            raise TypeError(f"Settings.{f.name}: no option kind for {annotation!r}")
        kind, optional = _KINDS[annotation]
        meta = f.metadata
        specs.append(OptionSpec(f.name, kind, optional, default_of(f), meta["help"],
                                meta.get("choices"), flag_of(f), meta.get("metavar"),
                                meta.get("shown"), meta.get("cli", True), meta.get("bare")))
    return specs


def to_cli_args(options: dict[str, Any]) -> list[str]:
    """``brushwork stylize`` arguments giving these options; defaults are left out.

    The inverse of the CLI's parsing: ``Settings(**options)`` equals the settings the
    printed command runs with.
    """
    args: list[str] = []
    defaults = Settings().to_dict()
    # Knobs that an explicit strength sets are left to it.
    implied = knobs(options["strength"]) if options.get("strength") is not None else {}
    for f in option_fields():
        if f.name not in options or options[f.name] is None:
            continue
        value = options[f.name]
        if isinstance(value, list):
            value = tuple(value)
        if value == default_of(f) or value == Settings.normalise(defaults)[f.name] or (
                f.name in implied and math.isclose(value, implied[f.name], rel_tol=1e-9)):
            continue
        flag = flag_of(f)
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            args += [flag, ",".join(repr(v) if isinstance(v, float) else str(v) for v in value)]
        elif isinstance(value, float):
            args += [flag, repr(value)]  # repr round-trips exactly
        else:
            args += [flag, str(value)]
    return args

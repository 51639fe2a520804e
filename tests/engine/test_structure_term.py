"""The structure term and faces in the objective, whole and in tiles."""

from __future__ import annotations

import sys

import pytest
import torch

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import TiledObjective
from brushwork.errors import BrushworkError
from brushwork.io import faces as io_faces
from brushwork.maths.faces import CONTENT_RAISE, face_map
from brushwork.maths.structure import laplacians, structure_loss
from conftest import tiny_weights


def _setup(seed: int = 4, size: tuple[int, int] = (97, 110), **options):
    s = Settings(**options)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(1, 3, *size, generator=g) * 255
    style = torch.rand(1, 3, 60, 50, generator=g) * 255
    x = torch.rand(1, 3, *size, generator=g) * 255
    return s, net, photo, style_grams(net, style, s.style_layers), x


def test_the_term_is_off_by_default_and_weighted_when_on():
    s, net, photo, targets, x = _setup()
    assert s.structure == 0 and float(Objective(net, s, photo, targets)(x)["structure"]) == 0
    s2 = Settings(structure=0.5)
    terms = Objective(net, s2, photo, targets)(x)
    want = 0.5 * structure_loss(x, laplacians(photo))
    assert float(terms["structure"]) == pytest.approx(float(want), rel=1e-5)
    assert float(terms["total"]) == pytest.approx(
        float(terms["content"] + terms["style"] + terms["tv"] + terms["structure"]), rel=1e-6)
    # At the photo itself the term and its gradient are zero.
    p = photo.clone().requires_grad_(True)
    Objective(net, s2, photo, targets)(p)["structure"].backward()
    assert p.grad is not None and float(p.grad.abs().max()) == 0.0


def test_tiled_equals_whole_with_structure_and_faces():
    s, net, photo, targets, x = _setup(size=(197, 230), structure=2.0)
    faces = face_map([(0.3, 0.2, 0.3, 0.35)], (197, 230))
    whole = Objective(net, s, photo, targets, faces=faces)
    tiled = TiledObjective(net, s, photo, targets, tile=16, faces=faces)
    assert len(tiled.tiles) >= 9
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    want["total"].backward()
    got["total"].backward()
    for key in ("content", "style", "structure", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert want["structure"].item() > 0
    assert a.grad is not None and b.grad is not None
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())


def _content_grad(objective: Objective, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    terms = objective(x)
    (terms["content"] + terms["structure"]).backward()
    assert x.grad is not None
    return x.grad.abs().sum(1)[0]  # (H, W)


def test_faces_raise_the_gradient_inside_them_only():
    s, net, photo, targets, x = _setup(size=(96, 96), structure=0.1)
    box = (0.25, 0.25, 0.5, 0.5)
    faces = face_map([box], (96, 96))
    plain = _content_grad(Objective(net, s, photo, targets), x)
    kept = _content_grad(Objective(net, s, photo, targets, faces=faces), x)
    inside = kept[40:56, 40:56].mean() / plain[40:56, 40:56].mean()
    outside = kept[:8, :8].mean() / plain[:8, :8].mean()
    assert float(inside) > CONTENT_RAISE / 10
    assert float(outside) == pytest.approx(1.0, abs=0.05)


def test_faces_keep_structure_even_with_structure_off():
    s, net, photo, targets, x = _setup(size=(64, 64))
    faces = face_map([(0.25, 0.25, 0.5, 0.5)], (64, 64))
    assert float(Objective(net, s, photo, targets, faces=faces)(x)["structure"]) > 0


def test_keep_faces_without_opencv_is_one_line_naming_the_extra(monkeypatch):
    from PIL import Image

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    with pytest.raises(BrushworkError, match=r"brushwork\[faces\]"):
        io_faces.detect_faces(Image.new("RGB", (32, 32)))


def test_a_cv2_without_the_cascade_is_refused(monkeypatch):
    from types import SimpleNamespace

    from PIL import Image

    monkeypatch.setitem(sys.modules, "cv2", SimpleNamespace(__name__="cv2"))
    with pytest.raises(BrushworkError, match="opencv-python-headless<5"):
        io_faces.detect_faces(Image.new("RGB", (32, 32)))


@pytest.fixture
def run_inputs(use_tiny, photo_path, painting_path):
    return photo_path, painting_path


def test_stylize_with_structure_stays_closer_to_the_photos_laplacian(run_inputs):
    from PIL import Image

    import brushwork
    from brushwork.io.images import load_image, resize_to, to_tensor
    from brushwork.maths.structure import structure_distance

    photo_path, painting_path = run_inputs
    far = {"size": 32, "iterations": 30, "multiscale": "off", "seed": 1, "init": "noise"}
    off = brushwork.stylize(photo_path, painting_path, **far)
    on = brushwork.stylize(photo_path, painting_path, structure=10.0, **far)
    photo = to_tensor(resize_to(load_image(photo_path), off.image.size))

    def distance(image: Image.Image) -> float:
        return structure_distance(to_tensor(image), photo)

    assert on.losses["structure"] > 0 and off.losses["structure"] == 0
    assert distance(on.image) < 0.7 * distance(off.image)


def test_keep_faces_uses_the_detector_and_says_what_it_found(run_inputs, monkeypatch):
    import brushwork
    import brushwork.engine.painter as painter

    photo_path, painting_path = run_inputs
    seen = []
    monkeypatch.setattr(painter, "detect_faces",
                        lambda image: seen.append(image.size) or [(0.25, 0.2, 0.5, 0.6)])
    notes: list[str] = []
    result = brushwork.stylize(photo_path, painting_path, size=32, iterations=3,
                               multiscale="off", keep_faces=True, log=notes.append)
    assert seen and result.settings["keep_faces"] is True
    assert "keep_faces: found 1 face" in notes
    assert result.losses["structure"] >= 0
    monkeypatch.setattr(painter, "detect_faces", lambda image: [])
    notes.clear()
    brushwork.stylize(photo_path, painting_path, size=32, iterations=2, multiscale="off",
                      keep_faces=True, log=notes.append)
    assert any("found 0 faces; the picture is painted as without it" in n for n in notes)


@pytest.mark.slow
def test_the_real_detector_finds_the_demo_photos_face():
    """matplotlib's Grace Hopper photograph (the demo photo): one face, in the upper middle."""
    pytest.importorskip("cv2")
    from brushwork.io.images import load_image
    from brushwork.io.samples import demo_photo

    boxes = io_faces.detect_faces(load_image(demo_photo()))
    assert len(boxes) == 1
    left, top, width, height = boxes[0]
    assert 0.2 < left + width / 2 < 0.8 and top + height / 2 < 0.6 and width > 0.2

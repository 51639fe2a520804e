"""Soft face maps from boxes."""

from __future__ import annotations

import torch

from brushwork.maths.faces import emphasis, face_map


def test_a_face_map_is_one_inside_zero_outside_and_soft_between():
    # A box in the middle: left 0.25, top 0.25, half the picture wide and high.
    m = face_map([(0.25, 0.25, 0.5, 0.5)], (100, 80))[0, 0]
    assert m.shape == (100, 80)
    assert float(m[50, 40]) == 1.0  # the centre
    assert float(m[0, 0]) == 0.0 and float(m[99, 79]) == 0.0  # the corners
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    # Along the middle row, from the centre out: never rising, and soft across the edge.
    row = m[50, 40:]
    assert bool((row[1:] <= row[:-1] + 1e-6).all())
    between = row[(row > 0.05) & (row < 0.95)]
    assert len(between) >= 3
    # Taller than the box (HEIGHTEN): still inside just above the box's top.
    assert float(m[24, 40]) > 0.5 > float(m[50, 40 + 21])


def test_several_faces_and_none():
    m = face_map([(0.0, 0.0, 0.2, 0.2), (0.7, 0.7, 0.3, 0.3)], (50, 50))[0, 0]
    assert float(m[5, 5]) == 1.0 and float(m[42, 42]) == 1.0 and float(m[25, 25]) == 0.0
    assert float(face_map([], (10, 10)).abs().sum()) == 0.0


def test_emphasis():
    m = face_map([(0.25, 0.25, 0.5, 0.5)], (40, 40))
    e = emphasis(m, 9.0)
    assert float(e.min()) == 1.0 and float(e.max()) == 10.0
    torch.testing.assert_close(e, 1 + 9 * m)

"""The maths of style transfer, as pure functions on tensors: no files, no network, no
device choice; torch and numpy only (the lowest layer but one; see docs/architecture.md).

* ``losses``    Gram matrices and the content, style and total-variation losses
* ``regions``   guided Gram matrices: masks resized to a layer, per-region statistics
* ``color``     colour control: luminance transfer and histogram matching
* ``strength``  the one ``--strength`` knob, from photo to painting
* ``layers``    the VGG stacks' layer names (conv1_1, relu4_2, pool5, ...)
"""

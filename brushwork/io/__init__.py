"""Files in and out: nothing here optimises a picture (see docs/architecture.md).

* ``images``      reading pictures safely (limits, EXIF, colour) and writing them atomically
                  with their settings inside
* ``masks``       style masks and colour-coded region maps, checked before any work
* ``weights``     the feature network's weights: sources, download, cache, formats
* ``checkpoint``  a run's saved state for ``--resume``
* ``plots``       loss plots (matplotlib)
* ``sheets``      contact sheets: pictures in a labelled grid
* ``samples``     the demo's photo and a painting made on the spot, offline
"""

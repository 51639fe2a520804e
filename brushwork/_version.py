"""brushwork's version: its own module, so that any module may import it without
importing the package's public API (brushwork/__init__.py) first."""

__version__ = "0.1.0"

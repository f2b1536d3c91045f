"""The sketch model lives with the other feature models (omokage.features.sketch: it is fitted, saved and loaded like
them); this name is where the sketch package's readers look for it."""

from omokage.features.sketch import SketchModel

__all__ = ["SketchModel"]

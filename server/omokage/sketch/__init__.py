"""Live sketch search (docs/sketch.md): a drawing → the faces it fits best and a preview generated from it.

    canvas.py    strokes in, rasters out (pure state, per session)
    lineart.py   the catalog's line art and colour maps, the domain drawings are compared in
    model.py     SketchModel: the likelihood of a drawing for every face, and its closed-form latent
    service.py   SketchService: many sessions' drawings as one batch (what the server runs off its loop)
    worker.py    SketchWorker: the SketchService in a child process of its own, fed over a pipe (the server's)
    simulate.py  simulated sketchers for benchmarks and tests
"""

from omokage.sketch.canvas import (MAX_POINTS_PER_MESSAGE, MAX_STROKES, TOOLS, Observations, Raster, SketchCanvas,
                                   SketchError, Stroke, check_stroke)

# SketchModel and SketchService are imported on first use: the model is also a registered feature model
# (omokage.features imports it), and importing it here would make the two packages import each other
_LAZY = {"SketchModel": "omokage.sketch.model", "SketchService": "omokage.sketch.service",
         "SketchResult": "omokage.sketch.service"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MAX_POINTS_PER_MESSAGE", "MAX_STROKES", "Observations", "Raster", "SketchCanvas", "SketchError",
           "SketchModel", "SketchResult", "SketchService", "Stroke", "TOOLS", "check_stroke"]

"""DGKIP Studio: the Qt desktop front end of the DGKIP engine.

The GUI imports the engine only through its public modules (``engine.config``, ``engine.events``,
``engine.control``, ``engine.result``, ``engine.distill``, ``engine.data``, ``engine.export``,
``engine.plan``) and runs every long computation on a background ``QThread``.
"""

from dgkip_gui.pyside_refcount import pin_none_if_leaking

__version__ = "0.1.0"
APP_NAME = "DGKIP Studio"
ORG_NAME = "DGKIP"

pin_none_if_leaking()       # before any widget exists: see dgkip_gui.pyside_refcount

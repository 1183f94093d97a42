"""seaice_lib: AI4Arctic sea-ice charting, from the data portal to TSViT models and charts."""

from . import logs

__version__ = "0.1.0"

logs.configure(on_import=True)  # log lines to stderr until a command line says otherwise (library use, notebooks)

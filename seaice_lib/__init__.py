"""seaice_lib: AI4Arctic sea-ice charting, from the data portal to TSViT models and charts."""

__version__ = "0.1.0"

"""Charts from trained models: chart files of whole scenes at 80 m (predicted by
:mod:`seaice_lib.engine.scenes`), the official upload package, and the ``seaice predict`` /
``seaice evaluate`` commands."""

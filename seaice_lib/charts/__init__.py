"""Charts from trained models: CF chart files of whole scenes at 80 m (``cf``, torch-free; predicted
by :mod:`seaice_lib.engine.whole_scenes` in ``inference``), the official upload package (``submission``),
charting scenes as they land in a folder (``follow``, torch-free), and the ``seaice predict`` /
``seaice evaluate`` commands (``commands``)."""

"""Charts from trained models: whole scenes at 80 m, chart files, the official upload package, and
the ``seaice predict`` / ``seaice evaluate`` commands."""

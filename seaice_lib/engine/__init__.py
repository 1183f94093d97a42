"""Training and scoring: losses, the training loop (CPU, GPU, DDP), the official AutoICE metric, the
evaluation of models on store patches (a proxy) and on whole scenes at 80 m (the official score)."""

"""Training and scoring: losses, the training loop (CPU, GPU, DDP), the official AutoICE metric and
the evaluation of models on store patches."""

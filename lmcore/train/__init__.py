"""Training: the entry's settings, the loop, optimizers and schedules, checkpoints and resume, the
starting weights, processes and launch, where it runs, live loggers. This file imports nothing: the
workflow reads lmcore.train.config and lmcore.train.init while it plans."""

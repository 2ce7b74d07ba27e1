"""Train, validate, predict and export: the jobs the command line runs."""

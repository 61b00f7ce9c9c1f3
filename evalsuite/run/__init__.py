"""`evalsuite run`: every checkpoint below a folder × every benchmark × clean and perturbed, through the
durable request store, with robustness metrics (`discovery`, `pipeline`, `results`), written as the run
folder's tables and read back by analysis and reports (`records`)."""

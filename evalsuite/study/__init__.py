"""`evalsuite study`: the whole experiment (SFT cells -> DPO cells -> evaluation of every checkpoint -> report) as
one resumable graph of units (`graph`), run by an executor (`executors`: local, ray, slurm) and driven by `driver`."""

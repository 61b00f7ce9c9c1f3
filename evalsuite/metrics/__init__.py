"""Metrics as pure functions of answers and scores (no models, no files), so each is testable on constructed
cases: benchmark scores with bootstrap intervals (`scores`), robustness to perturbations (`robustness`),
POSIX prompt sensitivity (`posix`), and paired significance between grid cells (`significance`)."""

from evalsuite.metrics.posix import posix, posix_psi
from evalsuite.metrics.robustness import Robustness, robustness
from evalsuite.metrics.scores import Estimate, bootstrap_ci
from evalsuite.metrics.significance import McNemar, PairedBootstrap, mcnemar, paired_bootstrap

__all__ = ["Estimate", "McNemar", "PairedBootstrap", "Robustness", "bootstrap_ci", "mcnemar", "paired_bootstrap",
           "posix", "posix_psi", "robustness"]

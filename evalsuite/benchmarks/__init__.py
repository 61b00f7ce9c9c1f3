"""Benchmarks: a registry of `Benchmark` classes (one module each) on a shared base. See `base.py`."""

from evalsuite.benchmarks import alpacaeval, bbh, ifeval, mmlu, mtbench  # noqa: F401 - registers
from evalsuite.benchmarks.base import Benchmark, Item, Sample
from evalsuite.benchmarks.prompting import Prompter, Shot
from evalsuite.benchmarks.registry import BENCHMARKS, get_benchmark, register

__all__ = ["BENCHMARKS", "Benchmark", "Item", "Prompter", "Sample", "Shot", "get_benchmark", "register"]

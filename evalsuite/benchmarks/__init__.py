"""Benchmarks: a registry of `Benchmark` classes (one module each) on a shared base. See `base.py`."""

from evalsuite.benchmarks import alpacaeval, bbh, ifeval, mmlu, mtbench  # noqa: F401 - registers
from evalsuite.benchmarks.base import Benchmark
from evalsuite.benchmarks.prompting import Prompter, Shot
from evalsuite.benchmarks.registry import BENCHMARKS, get_benchmark, register
from evalsuite.benchmarks.types import BenchmarkResult, Item, Perturbed, Sample

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkResult", "Item", "Perturbed", "Prompter", "Sample", "Shot",
           "get_benchmark", "register"]

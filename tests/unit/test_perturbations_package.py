import subprocess
import sys


def test_perturbations_does_not_import_evalsuite():
    """Every module of the package, kinds included, loads without evalsuite."""
    code = ("import sys, perturbations, perturbations.llm, perturbations.benchmarks; perturbations.kind_names(); "
            "assert not any(m.split('.')[0] == 'evalsuite' for m in sys.modules), 'evalsuite imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

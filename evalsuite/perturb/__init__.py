"""evalsuite's side of the standalone `perturbations` package: variants of benchmark items (`variants`) and the
LLM paraphraser on our backends (`paraphrase`)."""

from evalsuite.perturb.paraphrase import backend_completer, load_paraphraser, make_paraphraser
from evalsuite.perturb.variants import (
    item_variant_rows,
    kind_with,
    perturbed_items,
    read_variant_rows,
    variant_rows,
    write_rows,
)

__all__ = ["backend_completer", "item_variant_rows", "kind_with", "load_paraphraser", "make_paraphraser",
           "perturbed_items", "read_variant_rows", "variant_rows", "write_rows"]

"""Prompt perturbations (typo, rephrase, format, template) that never change what is being asked.

A standalone package: it must not import `evalsuite`, so other projects can use it on its own.
Each variant is a pure function of (item id, kind, variant index, global seed, severity):

    from perturbations import get_kind, perturb
    from perturbations.benchmarks import ifeval_item
    v = perturb(ifeval_item(row), get_kind("typo"), variant=0, seed=1234, severity=0.1)
    v.text, v.changes, v.edit_distance

Modules: `document` (items as fields + options + layout), `spans` (what is protected), `seeding`,
`kinds/` (one module per kind, registered by name), `rewording` (offline rephrase rules), `llm` (LLM
paraphrase with checks and a cache), `benchmarks` (items and protected content for MMLU, BBH, IFEval,
MT-Bench and AlpacaEval rows). A `template` variant keeps the clean text and sets its `prompt_format` to
`OTHER_PROMPT_FORMAT`: the runner asks it in whichever format the checkpoint does not use. A kind's
`max_variants` caps the variants per item (`Kind.variant_count`). See docs/perturbations.md.
"""

from perturbations.api import edit_distance, perturb, perturb_items
from perturbations.base import Change, Kind, Skip, Variant
from perturbations.document import OTHER_PROMPT_FORMAT, Document, Field, Item, Layout, Options
from perturbations.registry import get_kind, kind_names, register

__version__ = "0.1.0"
__all__ = ["OTHER_PROMPT_FORMAT", "Change", "Document", "Field", "Item", "Kind", "Layout", "Options", "Skip", "Variant",
           "edit_distance", "get_kind", "kind_names", "perturb", "perturb_items", "register"]

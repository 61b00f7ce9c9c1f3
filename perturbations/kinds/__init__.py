"""The built-in kinds; importing this package registers them."""

from perturbations.kinds import format, rephrase, typo  # noqa: F401

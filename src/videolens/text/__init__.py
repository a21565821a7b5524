"""What to look for: label sets (list, comma string, txt/json/yaml files) and prompt templates."""

from videolens.text.labels import LabelSet, LabelSpec, load_labels
from videolens.text.prompts import (
    ACTION_TEMPLATES,
    TUNING_ACTIONS,
    build_prompts,
    class_name_to_text,
    tuning_prompts,
    validate_templates,
)

__all__ = [
    "ACTION_TEMPLATES",
    "TUNING_ACTIONS",
    "LabelSet",
    "LabelSpec",
    "build_prompts",
    "class_name_to_text",
    "load_labels",
    "tuning_prompts",
    "validate_templates",
]

"""What to look for: label sets (list, comma string, txt/json/yaml files) and prompt templates."""

from videolens.text.labels import LabelSet, LabelSpec, load_labels
from videolens.text.prompts import (
    ACTION_TEMPLATES,
    build_prompts,
    class_name_to_text,
    validate_templates,
)

__all__ = [
    "ACTION_TEMPLATES",
    "LabelSet",
    "LabelSpec",
    "build_prompts",
    "class_name_to_text",
    "load_labels",
    "validate_templates",
]

"""Prompt templates and per-label prompt lists for zero-shot classification.

A template is a sentence with exactly one ``{}`` where the label goes. A classifier embeds every
prompt of a label and averages them (prompt ensembling, CLIP paper section 3.1.4); this module
only produces the strings, so it has no model or tokenizer dependency.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from videolens.errors import LabelError
from videolens.text.labels import LabelSet

__all__ = ["ACTION_TEMPLATES", "TUNING_ACTIONS", "build_prompts", "class_name_to_text",
           "tuning_prompts", "validate_templates"]

# Built-in ensemble for human actions. The idea comes from the Kinetics-700 and UCF101 template
# lists that OpenAI published with CLIP (openai/CLIP, data/prompts.md; ensembling is shown in
# notebooks/Prompt_Engineering_for_ImageNet.ipynb). This is our own selection and wording:
# it mixes frames with phrasings for gerund labels ("playing guitar", Kinetics style) and for noun
# labels ("doing {}" / "performing {}", for names like "apply eye makeup" or "high jump"), and
# a few image-quality variants because video frames are often blurry or low resolution.
ACTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a person {}.",
    "a video of a person {}.",
    "a video frame of someone {}.",
    "a person is {}.",
    "a photo of a person doing {}.",
    "a video of someone doing {}.",
    "a person performing {}.",
    "a person practicing {}.",
    "a close-up of a person {}.",
    "a blurry video frame of a person {}.",
    "a low resolution video of a person {}.",
    "footage of people {}.",
    "an example of the action: {}.",
    "a human action: {}.",
)

# Everyday actions whose prompts stand in for users' text queries when a library measures the
# recall of its approximate search: text embeddings sit apart from frame embeddings (the CLIP
# modality gap), so queries made by perturbing frame rows say little about text recall. Our own
# list of common activities, not a benchmark's classes.
TUNING_ACTIONS: tuple[str, ...] = (
    "walking", "running", "jumping", "dancing", "swimming", "cycling", "driving a car",
    "cooking", "eating", "drinking coffee", "reading a book", "writing", "typing on a laptop",
    "talking on the phone", "playing guitar", "playing piano", "singing", "playing soccer",
    "playing basketball", "playing tennis", "skiing", "surfing", "climbing a wall",
    "lifting weights", "doing yoga", "cleaning the floor", "washing dishes", "brushing teeth",
    "cutting vegetables", "painting a wall", "fishing", "riding a horse", "skateboarding",
    "hugging", "shaking hands", "laughing", "sleeping", "opening a door", "throwing a ball",
    "walking a dog",
)


def tuning_prompts(templates: Sequence[str] = ACTION_TEMPLATES[:8]) -> list[str]:
    """Every :data:`TUNING_ACTIONS` action in every template: 320 text queries with the
    default eight templates."""
    checked = validate_templates(templates)
    return [template.format(action) for action in TUNING_ACTIONS for template in checked]


_PLACEHOLDER = "{}"
_TEMPLATE_EXAMPLE = "write it like 'a video of a person {}.'"


def validate_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Check prompt templates and return them stripped and de-duplicated, order kept.

    Args:
        templates: sentences that each contain ``{}`` exactly once, where the label goes.

    Returns:
        The templates as a tuple, surrounding whitespace removed, repeats dropped (a repeated
        template would only give its prompt more weight in the ensemble average).

    Raises:
        LabelError: a single string instead of a list, no templates, a non-string template, or
            a template without exactly one ``{}``.
    """
    if isinstance(templates, str):
        # Iterating a string would validate single characters; say what was meant instead.
        raise LabelError(
            f"prompt templates must be a list of strings, got the single string {templates!r}",
            hint=f"wrap it in a list: [{templates!r}]",
        )
    validated: list[str] = []
    for template in templates:
        if not isinstance(template, str):
            raise LabelError(
                f"prompt template {template!r} is not text ({type(template).__name__})",
                hint=_TEMPLATE_EXAMPLE,
            )
        template = template.strip()
        count = template.count(_PLACEHOLDER)
        if count != 1:
            raise LabelError(
                f"prompt template {template!r} must contain '{{}}' exactly once (found {count})",
                hint=_TEMPLATE_EXAMPLE,
            )
        if template not in validated:
            validated.append(template)
    if not validated:
        raise LabelError("no prompt templates given", hint=_TEMPLATE_EXAMPLE)
    return tuple(validated)


def build_prompts(label_set: LabelSet, templates: Sequence[str] | None = None) -> list[list[str]]:
    """Texts to embed for each label: every template filled in, then the label's descriptions.

    Args:
        label_set: the labels; each is inserted verbatim (no lowercasing).
        templates: templates with one ``{}`` each; ``None`` uses :data:`ACTION_TEMPLATES`.

    Returns:
        One list per label, in ``label_set.labels`` order:
        ``[template_1 with label, ..., template_T with label, *descriptions]``.
        With K labels the outer list has length K; label k has T + len(descriptions[k])
        prompts, so lists differ in length when only some labels have descriptions.

    Raises:
        LabelError: invalid templates (see :func:`validate_templates`).
    """
    checked = validate_templates(ACTION_TEMPLATES if templates is None else templates)
    prompts: list[list[str]] = []
    for label in label_set.labels:
        # str.replace, not str.format: labels or templates with other braces ("{weird}",
        # "a {bold} move {}") must not raise KeyError or IndexError.
        filled = [template.replace(_PLACEHOLDER, label) for template in checked]
        prompts.append(filled + list(label_set.descriptions.get(label, ())))
    return prompts


# lower case followed by upper case: "ApplyEye" -> "Apply Eye", "pushUps" -> "push Ups".
_LOWER_UPPER = re.compile(r"(?<=[a-z])(?=[A-Z])")
# digit before a capitalised word, but not inside a token like "3D": "Mp3Player" -> "Mp3 Player".
_DIGIT_WORD = re.compile(r"(?<=[0-9])(?=[A-Z][a-z])")
# end of an upper-case run before a capitalised word: "PlayingDVDGame" -> "PlayingDVD Game".
_ACRONYM_WORD = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")


def class_name_to_text(name: str) -> str:
    """Turn a dataset class name into plain lower-case words for prompts.

    Rules, applied in order:

    1. Underscores become spaces: ``"brush_hair"`` -> ``"brush hair"``.
    2. If the name has no whitespace (an identifier such as ``"ApplyEyeMakeup"`` or
       ``"Playing_Guitar"``), its words are split at case changes: before an upper-case letter
       that follows a lower-case one (``"TaiChi"`` -> ``"Tai Chi"``, ``"YoYo"`` -> ``"Yo Yo"``);
       before a capitalised word that follows a digit (``"Mp3Player"`` -> ``"Mp3 Player"``);
       and before the last capital of an upper-case run followed by lower case, so acronyms
       stay whole (``"PlayingDVDGame"`` -> ``"Playing DVD Game"``, ``"3DPrinting"`` ->
       ``"3D Printing"``). Names that already contain spaces are prose and are not split
       (``"playing iPhone games"`` keeps ``"iphone"`` as one word).
    3. Everything is lower-cased and runs of whitespace collapse to one space.

    Hyphens, digits and punctuation are kept. Examples: ``"ApplyEyeMakeup"`` ->
    ``"apply eye makeup"``, ``"playing_guitar"`` -> ``"playing guitar"``, ``"PushUps"`` ->
    ``"push ups"``, ``"BasketballDunk"`` -> ``"basketball dunk"``, ``"Skiing"`` -> ``"skiing"``.

    Raises:
        LabelError: the name is empty or only separators.
    """
    text = name.replace("_", " ")
    if not any(char.isspace() for char in name):
        text = " ".join(_split_camel(word) for word in text.split())
    words = text.lower().split()
    if not words:
        raise LabelError(f"class name {name!r} is empty", hint="give every class a name")
    return " ".join(words)


def _split_camel(word: str) -> str:
    for boundary in (_LOWER_UPPER, _DIGIT_WORD, _ACRONYM_WORD):
        word = boundary.sub(" ", word)
    return word

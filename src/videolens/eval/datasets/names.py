"""Facts about published class names that do not match the official ones, and the name key
used to compare them.

Kept apart from the readers so the shared helpers (:mod:`.base`) and the protocols can use
them without importing a reader.
"""

from __future__ import annotations

__all__ = ["FROSTER_K400_SPELLINGS", "FROSTER_SPELLINGS", "FROSTER_SSV2_SPELLINGS", "compact_key",
           "official_k400_name"]


def compact_key(name: str) -> str:
    """Case-folded, with underscores and all whitespace removed: ``"Apply Eye Makeup"``,
    ``"ApplyEyeMakeup"`` and ``"apply_eye_makeup"`` compare equal, as do FROSTER's
    ``"Yoyo"`` and UCF101's ``"YoYo"``."""
    return "".join(name.replace("_", " ").split()).casefold()


# FROSTER's spelling of a Kinetics-400 class -> the official name. FROSTER rewrote these class
# names in its base-to-novel class files (``Visual-AI/FROSTER``, ``zs_label_db/B2N_k400/
# train_idx2cls.csv``, ``test_idx2cls.csv``, ``raw_*_idx2cls.json``, ``*_rephrased.json``);
# found by comparing them with the official list (the same 400 names as X-CLIP's and
# ViFi-CLIP's ``labels/kinetics_400_labels.csv`` and FROSTER's own
# ``label_db/k400-index2cls.json``). "swimming breaststroke" differs from "swimming breast
# stroke" only in spacing, which :func:`compact_key` ignores; the other 7 need this table.
FROSTER_K400_SPELLINGS: dict[str, str] = {
    "barbecuing": "barbequing",
    "driving a car": "driving car",
    "driving a tractor": "driving tractor",
    "eating a burger": "eating burger",
    "giving or receiving an award": "giving or receiving award",
    "skiing (not slalom or cross-country)": "skiing (not slalom or crosscountry)",
    "skiing cross-country": "skiing crosscountry",
    "swimming breaststroke": "swimming breast stroke",
}
# FROSTER's spelling of a Something-Something v2 class -> the official ``labels.json`` key:
# its base-to-novel rephrased class file ``zs_label_db/B2N_ssv2/train_rephrased.json`` names
# these 3 classes differently (its ``*_idx2cls.csv`` use the official names).
FROSTER_SSV2_SPELLINGS: dict[str, str] = {
    "Putting a number of something onto something":
        "Putting number of something onto something",
    "Putting something, something, and something on the table":
        "Putting something, something and something on the table",
    "Stacking a number of something": "Stacking number of something",
}
FROSTER_SPELLINGS: dict[str, str] = {**FROSTER_K400_SPELLINGS, **FROSTER_SSV2_SPELLINGS}
_OFFICIAL = {compact_key(k): v for k, v in FROSTER_K400_SPELLINGS.items()}


def official_k400_name(name: str) -> str:
    """The official Kinetics-400 name for a class spelled as in FROSTER's files
    (:data:`FROSTER_K400_SPELLINGS`, compared by :func:`compact_key`); other names
    unchanged."""
    return _OFFICIAL.get(compact_key(name), name)

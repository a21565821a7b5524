"""Named hub checkpoints, with the sampling they were trained or evaluated with.

Preprocessing (resize, crop, mean/std) travels with each checkpoint's own processor files;
a preset adds what those files do not say: how many frames a video should be sampled to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    hub_id: str
    frames: int
    summary: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "clip-b32",
            "openai/clip-vit-base-patch32",
            8,
            "CLIP ViT-B/32 (Radford et al. 2021); fastest, the default on CPU",
        ),
        Preset(
            "clip-b16",
            "openai/clip-vit-base-patch16",
            8,
            "CLIP ViT-B/16; ~4x the compute of B/32, usually a few points more accurate",
        ),
        Preset(
            "clip-l14",
            "openai/clip-vit-large-patch14",
            8,
            "CLIP ViT-L/14; the strongest CLIP, for a GPU",
        ),
        Preset(
            "siglip-b16",
            "google/siglip-base-patch16-224",
            8,
            "SigLIP ViT-B/16 (Zhai et al. 2023); independent sigmoid score per label",
        ),
        Preset(
            "xclip-b16-zs",
            "microsoft/xclip-base-patch16-zero-shot",
            32,
            "X-CLIP ViT-B/16 zero-shot (Ni et al. 2022); video encoder over 32 frames",
        ),
        Preset(
            "xclip-b32",
            "microsoft/xclip-base-patch32",
            8,
            "X-CLIP ViT-B/32 trained on Kinetics-400 (8 frames); not zero-shot on K400",
        ),
    ]
}

DEFAULT_MODEL = "clip-b32"


def resolve(name: str) -> tuple[str, Preset | None]:
    """Preset name or hub id -> (hub id or folder, preset if any). Hub ids of presets match too."""
    if name in PRESETS:
        return PRESETS[name].hub_id, PRESETS[name]
    for preset in PRESETS.values():
        if preset.hub_id == name:
            return name, preset
    return name, None

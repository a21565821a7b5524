"""Each paper's zero-shot test recipe, so a videolens number is comparable to its table.

A :class:`Recipe` fixes what the paper's test code fixes — frames, frame stride, temporal
views, spatial crops, how views are combined, prompt templates and how class names become
text — and says for every value which file of the paper's repository it comes from
(:attr:`Recipe.sources`; read at the commits named in ``docs/reference-numbers.md``). Options
given explicitly (``--frames``, ``--views``, ``--template``, ...) override the recipe's.

What no recipe can fix: the weights (FROSTER, Open-VCLIP and ViFi-CLIP checkpoints are not
Hugging Face checkpoints; a recipe with ``clip-b16`` reproduces the papers' *frozen CLIP*
rows), the decoder (slowfast and mmaction resize with their own interpolation), and — for
FROSTER and Open-VCLIP's PyAV runs — slowfast's selective-decoding quirk, which ignores
``USE_OFFSET_SAMPLING`` and clamps a view's last frame (see ``docs/reference-numbers.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

__all__ = ["FROSTER_TEMPLATES", "RECIPES", "Recipe", "get_recipe", "raw_class_texts"]

FROSTER_REPO = "Visual-AI/FROSTER"
OPENVCLIP_REPO = "wengzejia1/Open-VCLIP"
VIFI_REPO = "muzairkhattak/ViFi-CLIP"
XCLIP_REPO = "microsoft/VideoX (X-CLIP/)"

# The 28 templates of FROSTER's ``TemporalClipVideo.text_prompt``
# (slowfast/models/temporalclip_video_model.py); FROSTER adds a 29th, "{}", applied to the
# rephrased entry alone (prompt style "froster"). Open-VCLIP's ``text_prompt`` uses the same
# 28 and no 29th. "a example" is the papers' wording, kept as it changes the embeddings.
FROSTER_TEMPLATES: tuple[str, ...] = tuple(
    f"{lead} of {person}{{}}."
    for lead in ("a photo", "a video", "a example", "a demonstration")
    for person in ("", "a person ", "a person using ", "a person doing ", "a person during ",
                   "a person performing ", "a person practicing ")
)


@dataclass(frozen=True)
class Recipe:
    """A paper's test recipe.

    ``sampling``: :class:`~videolens.eval.views.ViewSampling` fields. ``templates``: the
    prompt templates. ``prompt_style``: ``"templates"`` or ``"froster"``
    (:func:`~videolens.eval.results.class_prompts`). ``class_texts``: ``"videolens"``
    (:func:`~videolens.text.class_name_to_text`) or ``"raw"`` (:func:`raw_class_texts`).
    ``class_text_files``: the paper's class-text files, to pass as ``--class-texts``.
    ``sources``: value -> where it is set. ``notes``: what still differs.
    """

    name: str
    paper: str
    sampling: dict[str, Any]
    templates: tuple[str, ...]
    prompt_style: str = "templates"
    class_texts: str = "videolens"
    class_text_files: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """Everything the recipe sets, with sources, for a result's ``record``."""
        return {"name": self.name, "paper": self.paper, "sampling": dict(self.sampling),
                "templates": len(self.templates), "prompt_style": self.prompt_style,
                "class_texts": self.class_texts, "class_text_files": self.class_text_files,
                "sources": dict(self.sources), "notes": list(self.notes)}


_SLOWFAST_TEST = {
    "mode": "dense", "frames": 8, "stride": 16, "views": 3, "crops": 1, "crop_fraction": 1.0,
    "view_starts": "offset", "target_fps": 30.0, "ensemble": "frames",
}

RECIPES: dict[str, Recipe] = {
    "froster": Recipe(
        name="froster",
        paper="FROSTER (Huang et al., ICLR 2024)",
        sampling=_SLOWFAST_TEST,
        templates=FROSTER_TEMPLATES,
        prompt_style="froster",
        class_texts="videolens",
        class_text_files=(
            "label_rephrase/{hmdb,ucf101,k400}_rephrased_classes.json, "
            "label_rephrase/k600_split{1,2,3}_rephrased_classes.json, "
            "zs_label_db/B2N_<dataset>/{train,test}_rephrased.json (base, novel)"),
        sources={
            "frames 8": f"{FROSTER_REPO} configs/Kinetics/TemporalCLIP_vitb16_8x16_STAdapter"
                        ".yaml DATA.NUM_FRAMES: 8",
            "stride 16": "same file, DATA.SAMPLING_RATE: 16",
            "views 3, crops 1": "same file, TEST.NUM_ENSEMBLE_VIEWS: 3, TEST.NUM_SPATIAL_CROPS: "
                                "1; script/testing/temporal_test_b16/*.sh pass the same",
            "view starts offset": "same file, DATA.USE_OFFSET_SAMPLING: True",
            "target fps 30": "slowfast/config/defaults.py _C.DATA.TARGET_FPS = 30",
            "crop: shorter side 224, centre 224": "same config, TRAIN_JITTER_SCALES[0] = "
                                                  "TEST_CROP_SIZE = 224; slowfast/datasets/"
                                                  "kinetics.py test branch",
            "ensemble": "slowfast/utils/meters.py TestMeter sums views (DATA.ENSEMBLE_METHOD "
                        "sum); temporalclip_video_model.py averages frame logits",
            "templates": "slowfast/models/temporalclip_video_model.py text_prompt (28 + '{}')",
            "prompt = template(name) + ' ' + rephrased entry": "same function, "
                                                               "txt.format(name) + ' ' + entry",
        },
        notes=(
            "pass FROSTER's rephrased class file as --class-texts; without one the rephrased "
            "entry is the class text itself",
            "FROSTER's test scripts decode with PyAV: slowfast's pyav_decode ignores "
            "USE_OFFSET_SAMPLING (views start at delta*v/V) and clamps a view's last frame to "
            "(T-1)*S frames; the recipe follows the configured sampling",
            "with a fixed-clip model (X-CLIP) views are combined by mean logits",
        ),
    ),
    "openvclip": Recipe(
        name="openvclip",
        paper="Open-VCLIP (Weng et al., ICML 2023)",
        sampling=_SLOWFAST_TEST,
        templates=FROSTER_TEMPLATES,
        class_texts="videolens",
        class_text_files="zs_label_db/{hmdb,ucf101}-index2cls.json, "
                         "zs_label_db/k600_split{1,2,3}/k600-openset-index2cls.json",
        sources={
            "frames 8, stride 16, views 3, crops 1, offset": f"{OPENVCLIP_REPO} configs/"
                "Kinetics/TemporalCLIP_vitb16_8x16_STAdapter.yaml; script/testing/"
                "temporal_test_b16/{hmdb,ucf,k600}.sh TEST.NUM_ENSEMBLE_VIEWS 3, "
                "TEST.NUM_SPATIAL_CROPS 1",
            "templates": "slowfast/models/temporalclip_video_model.py text_prompt (the 28, "
                         "no '{}')",
            "class names": "zs_label_db/*-index2cls.json: 'brush hair', 'Apply Eye Makeup' = "
                           "videolens' class texts up to case, which CLIP's tokenizer folds",
            "ensemble": "as FROSTER (slowfast TestMeter)",
        },
        notes=("HMDB51 is decoded with the torchvision backend (hmdb.sh), K-600 with PyAV "
               "(k600.sh: see the FROSTER note on PyAV)",),
    ),
    "vificlip": Recipe(
        name="vificlip",
        paper="ViFi-CLIP (Rasheed et al., CVPR 2023)",
        sampling={"mode": "segment", "frames": 32, "views": 1, "crops": 1,
                  "crop_fraction": 224 / 256, "ensemble": "probs"},
        templates=("a photo of a {}.",),
        class_texts="raw",
        class_text_files="labels/<dataset>_labels.csv (--class-names)",
        sources={
            "frames 32": f"{VIFI_REPO} configs/zero_shot/eval/*/16_32_*.yaml DATA.NUM_FRAMES: "
                         "32",
            "segment sampling": "datasets/build.py val_pipeline SampleFrames(clip_len=1, "
                                "num_clips=NUM_FRAMES, test_mode=True)",
            "views 1, crops 1": "utils/config.py TEST.NUM_CLIP = 1, TEST.NUM_CROP = 1",
            "crop 224 of shorter side 256": "datasets/build.py scale_resize = int(256 / 224 * "
                                            "INPUT_SIZE), CenterCrop(INPUT_SIZE = 224)",
            "template 'a photo of a {}.'": "trainers/vificlip.py VLPromptLearner (no "
                                           "prompting): CTX_INIT 'a photo of a' (utils/"
                                           "config.py) + ' ' + name + '.'",
            "raw class names": "labels/*.csv as written ('brush hair', 'ApplyEyeMakeup')",
            "ensemble probs": "main.py validate: softmax per view, summed",
        },
        notes=("evaluating vanilla CLIP, ViFi-CLIP sets ZS_EVAL (trainers/vificlip.py): "
               "template '{}' — pass --template '{}'",),
    ),
    "xclip": Recipe(
        name="xclip",
        paper="X-CLIP (Ni et al., ECCV 2022)",
        sampling={"mode": "segment", "frames": 32, "views": 1, "crops": 1,
                  "crop_fraction": 224 / 256, "ensemble": "probs"},
        templates=("{}",),
        class_texts="raw",
        class_text_files="labels/<dataset>_labels.csv (--class-names)",
        sources={
            "frames 32": f"{XCLIP_REPO} configs/{{hmdb51,ucf101}}/16_32.yaml DATA.NUM_FRAMES: "
                         "32; README zero-shot table '32x224'",
            "segment sampling, crop 224 of 256": "datasets/build.py val_pipeline "
                                                 "(SampleFrames test_mode, Resize -1x256, "
                                                 "CenterCrop 224)",
            "views 1, crops 1": "utils/config.py TEST.NUM_CLIP = 1, TEST.NUM_CROP = 1",
            "template '{}'": "utils/tools.py generate_text: text_aug = f'{{}}'",
            "raw class names": "labels/*.csv as written",
            "ensemble probs": "main.py validate: softmax per view, summed",
        },
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (case-insensitive).

    Raises:
        UsageError: unknown name.
    """
    key = name.strip().lower().replace("-", "")
    if key not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}", hint=f"use one of {', '.join(RECIPES)}")
    return RECIPES[key]


def raw_class_texts(class_names) -> tuple[str, ...]:
    """"Raw class names" as ViFi-CLIP's and X-CLIP's label files write them: the class name
    with underscores as spaces and nothing else changed (``brush_hair`` -> ``brush hair``,
    ``ApplyEyeMakeup`` stays). With ``--class-names`` set to the paper's label file, these
    are that file's names exactly."""
    return tuple(" ".join(name.replace("_", " ").split()) for name in class_names)

"""``videolens train``: adapt a CLIP-family model to video, or pretrain its vision tower.

Recipes (each defaults to its paper's settings; see :mod:`.config`):

========== ====================================================================
finetune   ViFi-CLIP: both towers, frame averaging, CE over logit_scale · cosine
distill    FROSTER: finetune + residual-projector distillation to the frozen start
cvrl       CVRL: self-supervised, two clips of a video, InfoNCE
rspnet     RSPNet: self-supervised, relative playback speed + appearance contrast
========== ====================================================================

``--temporal expand`` (Open-VCLIP) adds neighbour-frame attention to any of them; the saved
model records it. Python::

    from videolens.train import make_config, train
    config = make_config("finetune", {"model": "clip-b16", "data": "train.txt",
                                      "out": "runs/ucf", "epochs": 5})
    result = train(config)          # result.out is a folder for load_model / --model
"""

from .config import (
    RECIPES,
    CVRLConfig,
    DistillConfig,
    FinetuneConfig,
    RSPNetConfig,
    TrainConfig,
    TrainError,
    make_config,
    read_config_file,
)
from .loop import TrainResult, train

__all__ = [
    "RECIPES",
    "CVRLConfig",
    "DistillConfig",
    "FinetuneConfig",
    "RSPNetConfig",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "make_config",
    "read_config_file",
    "train",
]

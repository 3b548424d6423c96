"""mmr1's first-party imagegen rewards (registered through the ``mmr1`` entry-point group).

- ``color_fidelity``: rule-based, no weights: the image's dominant colour vs the colour word asked for.
- ``clip_score``, ``pickscore``, ``aesthetic``: a transformers CLIP folder
  (``reward_kwargs: {clip_score: {model: PATH}}``) or an open_clip model (``arch`` + ``checkpoint``);
  classes, constructed once per run (encoders in :mod:`mmr1_imagegen.encoders`).
- ``hps``: HPSv2 on open_clip ViT-H-14 (needs the ``imagegen`` extra).

The scorer modules import transformers only when a scorer is constructed.
"""

from mmr1.api import hookimpl

from mmr1_imagegen.clip import HPS, Aesthetic, ClipScore, PickScore
from mmr1_imagegen.color import color_fidelity

__all__ = ["Aesthetic", "ClipScore", "HPS", "PickScore", "color_fidelity"]


#: what these rewards score: the rollout backend must provide it (``t2i`` does); checked before training.
IMAGES = ("generated_images",)


@hookimpl
def register_rewards(register):
    register("color_fidelity", color_fidelity, needs=IMAGES)
    register("clip_score", ClipScore, needs=IMAGES)
    register("pickscore", PickScore, needs=IMAGES)
    register("aesthetic", Aesthetic, needs=IMAGES)
    register("hps", HPS, needs=IMAGES)

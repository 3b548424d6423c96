"""mmr1's first-party vision rewards (registered through the ``mmr1`` entry-point group).

Rewards: ``iou`` and MMR1's shaped ``perpo_reward`` (grounding), ``detection_ap`` /
``detection_ap50`` (COCO-style AP per image), ``ocr_edit_distance`` (MMR1:
``perpo_ocr_edit_distance_reward``) and ``anls`` (DocVQA). Box rewards compare boxes in one
coordinate frame (``mmr1_vision.frames``: original, resized, qwen1000, normalized).
"""

from mmr1.api import hookimpl

from mmr1_vision.detection import average_precision, detection_ap, detection_ap50
from mmr1_vision.grounding import box_iou, iou_reward, perpo_reward
from mmr1_vision.text import anls, ocr_edit_distance

__all__ = [
    "anls",
    "average_precision",
    "box_iou",
    "detection_ap",
    "detection_ap50",
    "iou_reward",
    "ocr_edit_distance",
    "perpo_reward",
]


@hookimpl
def register_rewards(register):
    register("iou", iou_reward)
    register("perpo_reward", perpo_reward)
    register("detection_ap", detection_ap)
    register("detection_ap50", detection_ap50)
    register("ocr_edit_distance", ocr_edit_distance)
    register(
        "perpo_ocr_edit_distance_reward",
        ocr_edit_distance,
        description="MMR1 alias of 'ocr_edit_distance'.",
    )
    register("anls", anls)

"""mmr1's first-party math rewards (registered through the ``mmr1`` entry-point group).

Rewards: ``format`` (MMR1: ``r1v_format``), ``accuracy`` (MMR1: ``r1v_acc``), ``mcq``, ``count``.
``timeouts()`` / ``stats()`` report how often math-verify ran past its deadline.
"""

from mmr1.api import hookimpl

from mmr1_math._pool import shutdown
from mmr1_math.accuracy import accuracy_reward, reset_stats, stats, timeouts
from mmr1_math.choice import mcq_reward
from mmr1_math.counting import count_reward
from mmr1_math.format import format_reward

__all__ = [
    "accuracy_reward",
    "count_reward",
    "format_reward",
    "mcq_reward",
    "reset_stats",
    "shutdown",
    "stats",
    "timeouts",
]


@hookimpl
def register_rewards(register):
    register("format", format_reward)
    register("r1v_format", format_reward, description="MMR1 alias of 'format'.")
    register("accuracy", accuracy_reward)
    register("r1v_acc", accuracy_reward, description="MMR1 alias of 'accuracy'.")
    register("mcq", mcq_reward)
    register("count", count_reward)

"""mmr1's first-party math rewards (registered through the ``mmr1`` entry-point group)."""

from mmr1 import hookimpl

from mmr1_math.format import format_reward


@hookimpl
def register_rewards(register):
    register("format", format_reward)
    register("r1v_format", format_reward, description="MMR1 alias of 'format'.")

"""mmr1's first-party imagegen rewards (registered through the ``mmr1`` entry-point group)."""

from mmr1 import hookimpl


@hookimpl
def register_rewards(register):
    pass

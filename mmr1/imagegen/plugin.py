"""Built-in text-to-image plugin: the ``t2i`` model adapter, rollout backend and data loaders."""

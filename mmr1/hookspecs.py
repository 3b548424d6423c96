"""Every hook a plugin can implement. This file is the plugin author's reference; the names a
plugin imports are in :mod:`mmr1.api`.

Each hook has the shape ``register_<things>(register)``: the plugin calls ``register(name, obj)``
once per thing it provides. Names are global: two plugins registering the same name is an error
that names both plugins.

    from mmr1.api import hookimpl

    @hookimpl
    def register_rewards(register):
        register("my_reward", my_reward)
"""

import pluggy

hookspec = pluggy.HookspecMarker("mmr1")
hookimpl = pluggy.HookimplMarker("mmr1")


@hookspec
def register_rewards(register):
    """Register reward functions: ``register(name, fn, description=None)``.

    ``fn(completions, **kwargs) -> list[float | None]`` gets the completions as plain strings and,
    as keyword arguments: ``prompts`` (the chat messages of each sample), every dataset column
    (``solution``, ``problem``, ... one list entry per completion), ``images`` (the prompt images
    of each sample, PIL), for text-to-image jobs ``generated_images`` (PIL) and ``completion_ids``,
    and the options given in the config under ``reward_kwargs: {name: {...}}``. Return one float
    per completion, or ``None`` for "no opinion" (that reward is left out of that sample's sum).

    If ``fn`` is a class, it is instantiated once per run with the ``reward_kwargs`` options (load
    a scoring model in ``__init__``) and the instance is called as above.
    ``description`` defaults to the first paragraph of the docstring; ``mmr1 list`` shows it.
    ``needs=("generated_images",)`` names keywords the reward cannot score without: ``mmr1 check``
    refuses a config whose data and rollout backend do not provide them, instead of a run where
    every call fails.
    """


@hookspec
def register_templates(register):
    """Register prompt templates: ``register(name, template)``.

    ``template`` is a :class:`mmr1.api.Template` (system prompt, question template with a
    ``{question}`` placeholder, answer template with ``{answer}``). YAML files under
    ``templates/`` are registered by the built-in plugin.
    """


@hookspec
def register_datasets(register):
    """Register dataset loaders: ``register(name, loader)``.

    ``loader(**options) -> Sequence[dict]``; options come from the config's ``dataset_kwargs`` plus
    ``path``. Each row is a dict with at least ``problem`` and ``solution`` and an ``image`` list
    (paths or PIL images, possibly empty). A plain list of dicts is normalised like the built-in
    loaders' rows (column checks, images, ``prompt``-only rows), its problems naming the plugin, its
    relative image paths taken from the launch folder. A loader may also offer
    ``loader.check(**options)`` yielding :class:`mmr1.api.DataProblem` for ``mmr1 check``.
    """


@hookspec
def register_models(register):
    """Register model adapters: ``register(name, adapter_cls)``.

    An adapter (a subclass of :class:`mmr1.api.ModelAdapter`) knows how one model family loads,
    turns chat messages and images into model inputs (a :class:`mmr1.api.PromptBatch`), and scores
    completion tokens. ``adapter_cls.matches(config)`` lets ``model_adapter: auto`` pick it from a
    transformers config.
    """


@hookspec
def register_image_tokenizers(register):
    """Register image tokenizers for text-to-image jobs: ``register(name, tokenizer_cls)``.

    ``tokenizer_cls.load(path, **options)`` returns an :class:`mmr1.api.ImageTokenizer`:
    ``encode(images) -> LongTensor`` (batch, h, w), ``decode(codes) -> list[PIL.Image]``,
    ``codebook_size`` and ``downsample``.
    """


@hookspec
def register_rollout_backends(register):
    """Register rollout (generation) backends: ``register(name, backend_cls)``.

    ``backend_cls(adapter, accelerator, config=config)``, a subclass of
    :class:`mmr1.api.RolloutBackend`, has
    ``generate(model, prompts, prompt_index, sampling: SamplingParams) -> Rollout``.
    """

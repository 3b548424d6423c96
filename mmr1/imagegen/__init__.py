"""Text-to-image building blocks (SimpleAR-style autoregressive generation).

Modules (imported on demand; nothing heavy is imported here):

- :mod:`mmr1.imagegen.tokenizers`: the image tokenizer protocol, ``vq`` (k-means) and ``cosmos``
  (TorchScript) tokenizers, :func:`~mmr1.imagegen.tokenizers.load_image_tokenizer`.
- :mod:`mmr1.imagegen.extract`: token extraction (``mmr1 tokenize``) and meta files.
- :mod:`mmr1.imagegen.meta`: meta files and YAML mixtures with sampling strategies.
- :mod:`mmr1.imagegen.vocab`: vocabulary extension of a causal LM (``prepare_t2i``, ``T2IVocab``).
- :mod:`mmr1.imagegen.sequence`: pretrain / SFT sequences with CFG dropout.
- :mod:`mmr1.imagegen.sampling`: the image-token decoder (rollouts, ``generate``, demo), CFG, grids.
- :mod:`mmr1.imagegen.shapes`: a rule-based shape classifier (``shape_of``; the demo's guard metric).
- :mod:`mmr1.imagegen.foreground`: foreground / background split (shape classifier, colour reward).
- :mod:`mmr1.imagegen.adapter`: the ``t2i`` model adapter and its processor (tokenizer + vocabulary).
- :mod:`mmr1.imagegen.rollout`: the ``t2i`` rollout backend (visual tokens only, optional CFG, decoding).
- :mod:`mmr1.imagegen.plugin`: the built-in plugin registering those two and the dataset loaders
  ``captions`` and ``t2i_meta`` (:mod:`mmr1.imagegen.data`).
- :mod:`mmr1.imagegen.cli`: ``prepare-t2i``, ``generate``, ``tokenize`` and text-to-image ``sft``
  entry points; pretrain / SFT itself is :mod:`mmr1.sft.t2i`.
- :mod:`mmr1.imagegen.demo`: the text-to-image CPU demo (``run_t2i_demo``).

The synthetic shapes and the tiny offline models (Qwen2 causal LM, CLIP, a complete text-to-image
setup) the tests and demos use are in :mod:`mmr1.fixtures`. See docs/imagegen.md.
"""

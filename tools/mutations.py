"""The mutations ``tools/mutate.py`` applies, one at a time, to a copy of the tree.

Each entry replaces one exact snippet ``old`` (which must occur exactly once in ``file``) by
``new``; ``description`` says which behaviour that breaks. ``tests`` are pytest node ids (or test
files) run first, with ``-x``; ``k`` is an optional ``-k`` expression for that first run. When the
targeted run passes, the whole core suite decides. ``tests/test_mutations_apply.py`` keeps this list
in step with the code.
"""

from __future__ import annotations

from dataclasses import dataclass

AREAS = ("trainer", "algorithms", "batching", "rewards", "checkpoint", "rollout", "data", "config", "sft")


@dataclass(frozen=True)
class Mutation:
    id: str
    area: str
    file: str
    old: str
    new: str
    description: str
    tests: tuple[str, ...] = ()
    k: str | None = None


TRAINER = "mmr1/grpo/trainer.py"
ALGORITHMS = "mmr1/grpo/algorithms.py"
BATCHING = "mmr1/grpo/batching.py"
REWARDS = "mmr1/grpo/rewards.py"
CHECKPOINT = "mmr1/grpo/checkpoint.py"
BUILD = "mmr1/grpo/build.py"
SFT_VLM = "mmr1/sft/vlm.py"
SFT_T2I = "mmr1/sft/t2i.py"
ROLLOUT_HF = "mmr1/rollout/hf.py"
SAMPLING = "mmr1/rollout/sampling.py"
IMG_SAMPLING = "mmr1/imagegen/sampling.py"
CONFIG = "mmr1/config.py"
T_TRAINER = "tests/test_grpo_trainer.py"
T_OPTIONS = "tests/test_training_options.py"
T_ALGO = "tests/test_algorithms.py"
T_MECH = "tests/test_mechanisms.py"
SETUP = "mmr1/grpo/setup.py"
T_COMPAT = "tests/test_compatibility.py"
T_MATH = "tests/test_rewards_math.py"
T_VISION = "tests/test_rewards_vision.py"
T_DATA = "tests/test_data.py"
T_CONFIG = "tests/test_config.py"
T_SFT_VLM = "tests/test_sft_vlm.py"
T_REGISTRIES = "tests/test_algorithm_registries.py"
T_IMG_SAMPLING = "tests/test_imagegen_sampling.py"
T_PRECISION = "tests/test_precision.py"
MODELS_BASE = "mmr1/models/base.py"
QWEN_VL = "mmr1/models/qwen_vl.py"

MUTATIONS: list[Mutation] = [
    # -- training options ---------------------------------------------------------------------
    Mutation(
        "trainer-beta-ignored", "trainer", TRAINER,
        old="beta=c.beta,",
        new="beta=0.0,",
        description="the KL penalty is computed and logged but never added to the loss (beta has no effect)",
        tests=(T_OPTIONS,),
    ),
    Mutation(
        "trainer-importance-sampling-level-ignored", "trainer", TRAINER,
        old="importance_sampling_level=c.importance_sampling_level,",
        new='importance_sampling_level="token",',
        description="importance_sampling_level: sequence (GSPO) trains with token-level ratios",
        tests=(T_OPTIONS,),
    ),
    Mutation(
        "trainer-gradient-checkpointing-never-on", "trainer", BUILD,
        old="    if config.gradient_checkpointing:\n        if hasattr(model,",
        new="    if False:\n        if hasattr(model,",
        description="gradient_checkpointing: true never enables checkpointing on the model",
        tests=(T_OPTIONS,),
    ),
    Mutation(
        "trainer-periodic-save-removed", "checkpoint", TRAINER,
        old="                    self.save()\n                    next_save = self._next_save()",
        new="                    next_save = self._next_save()",
        description="save_steps writes no checkpoint during training (only the final model)",
        tests=(T_OPTIONS, f"{T_TRAINER}::test_resume_gives_the_same_weights"),
    ),
    Mutation(
        "trainer-old-logp-never-scored", "trainer", TRAINER,
        old="need_old = c.num_iterations > 1 or plan.steps_per_generation > plan.gradient_accumulation_steps",
        new="need_old = False",
        description="with num_iterations > 1 the ratio stays 1: later passes are not importance-weighted or clipped",
        tests=(f"{T_OPTIONS}::test_num_iterations_passes_over_each_rollout",),
    ),
    Mutation(
        "trainer-update-ignores-temperature", "rollout", TRAINER,
        old="return algo.at_least_float32(logits) / mb.temperature",
        new="return algo.at_least_float32(logits)",
        description="log-probs are scored at temperature 1 while rollouts sample at the configured temperature",
        tests=(f"{T_OPTIONS}::test_temperature_schedule_drives_rollout_and_loss",),
    ),
    # -- algorithms -----------------------------------------------------------------------------
    Mutation(
        "adv-biased-std", "algorithms", ALGORITHMS,
        old="var = sq / (count - 1)",
        new="var = sq / count",
        description="group std is the biased (population) std, not the unbiased one trl and MMR1 use",
        tests=(f"{T_ALGO}::test_group_advantages_group_scaling",),
    ),
    Mutation(
        "adv-no-mean-clamp-dropped", "algorithms", ALGORITHMS,
        old="advantages = advantages.clamp(-1.0, 1.0)",
        new="advantages = advantages",
        description="no_mean_for_same_reward no longer clamps advantages to [-1, 1] (all-equal groups get r / eps)",
        tests=(f"{T_ALGO}::test_group_advantages_no_mean_for_same_reward",),
    ),
    Mutation(
        "clip-epsilon-high-ignored", "algorithms", ALGORITHMS,
        old="clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high)",
        new="clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_low)",
        description="epsilon_high (DAPO clip-higher) is ignored: the upper clip is 1 + epsilon",
        tests=(f"{T_ALGO}::test_clipping_zeroes_gradient_outside_the_band",),
    ),
    Mutation(
        "kl-k3-control-variate-dropped", "algorithms", ALGORITHMS,
        old="    return torch.exp(d) - d - 1\n",
        new="    return torch.exp(d) - 1\n",
        description="k3 loses its -d term: a biased, possibly negative KL estimate",
        tests=(f"{T_ALGO}::test_kl_estimators_at_known_point",),
    ),
    Mutation(
        "loss-grpo-as-token-mean", "algorithms", ALGORITHMS,
        old="return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()",
        new="return masked.sum() / mask.sum().clamp(min=1.0)",
        description="loss_type grpo normalises like bnpo (one token mean) instead of a mean of per-sequence means",
        tests=(f"{T_ALGO}::test_loss_normalisation",),
    ),
    Mutation(
        "loss-dapo-divided-by-accumulation", "algorithms", ALGORITHMS,
        old='@LOSS_TYPES.register("dapo", step_normalised=True)',
        new='@LOSS_TYPES.register("dapo")',
        description="dapo's micro-batch losses are divided by gradient_accumulation_steps: its step token mean shrinks",
        tests=(f"{T_REGISTRIES}::test_two_accumulated_micro_batches_give_the_gradient_of_one_batch",),
    ),
    # -- batching -------------------------------------------------------------------------------
    Mutation(
        "batch-steps-ignore-iterations", "batching", BATCHING,
        old="return self.steps_per_generation * self.num_iterations // self.gradient_accumulation_steps",
        new="return self.steps_per_generation // self.gradient_accumulation_steps",
        description="steps per rollout ignore num_iterations: an epoch-based run stops after 1/num_iterations of the data",
        tests=(f"{T_MECH}::test_one_epoch_with_several_iterations_sees_every_prompt_once",),
    ),
    Mutation(
        "batch-group-divisibility-unchecked", "batching", BATCHING,
        old="    if total % num_generations:\n",
        new="    if False:\n",
        description="a rollout that cannot hold whole groups is accepted and fails later, after the model has loaded",
        tests=(T_MECH, "tests/test_cli.py"),
    ),
    Mutation(
        "batch-sampler-same-order-each-epoch", "batching", BATCHING,
        old="random.Random(self.seed * 100_003 + epoch).shuffle(order)",
        new="random.Random(self.seed * 100_003).shuffle(order)",
        description="every epoch visits the prompts in the same order",
        tests=(f"{T_MECH}::test_prompt_sampler_reshuffles_every_epoch_and_resumes_from_its_count",),
    ),
    # -- rewards --------------------------------------------------------------------------------
    Mutation(
        "rewards-weights-ignored", "rewards", TRAINER,
        old="total = algo.combine_rewards(global_table, self.reward_weights) * c.reward_scale",
        new="total = algo.combine_rewards(global_table) * c.reward_scale",
        description="reward_weights are ignored: every reward counts with weight 1",
        tests=(f"{T_MECH}::test_reward_weights_weight_the_total_reward",),
    ),
    Mutation(
        "rewards-none-counts-as-zero", "rewards", REWARDS,
        old="table[i][j] = math.nan if v is None else v",
        new="table[i][j] = 0.0 if v is None else v",
        description="a reward's None ('no opinion') is scored 0 and enters the group baseline",
        tests=(f"{T_MECH}::test_reward_runner_keeps_none_as_no_opinion_and_passes_reward_kwargs",),
    ),
    Mutation(
        "rewards-function-options-dropped", "rewards", REWARDS,
        old="return self.fn(completions, **kwargs, **self.options)",
        new="return self.fn(completions, **kwargs)",
        description="reward_kwargs never reach function rewards (e.g. accuracy timeout, iou box_format)",
        tests=(f"{T_MECH}::test_reward_runner_keeps_none_as_no_opinion_and_passes_reward_kwargs",),
    ),
    Mutation(
        "math-format-allows-trailing-text", "rewards", "plugins/mmr1_math/format.py",
        old=r'THINK_ANSWER = re.compile(rf"^\s*<think>{_BODY}</think>\s*<answer>{_BODY}</answer>\s*$", re.DOTALL)',
        new=r'THINK_ANSWER = re.compile(rf"^\s*<think>{_BODY}</think>\s*<answer>{_BODY}</answer>", re.DOTALL)',
        description="format accepts text after </answer>",
        tests=(T_MATH,),
    ),
    Mutation(
        "math-accuracy-reads-head", "rewards", "plugins/mmr1_math/accuracy.py",
        old="pred = pred[-WHOLE_COMPLETION_TAIL:]",
        new="pred = pred[:WHOLE_COMPLETION_TAIL]",
        description="with no <answer>/\\boxed, accuracy searches the first 2,000 characters instead of the last",
        tests=(f"{T_MATH}::test_accuracy_without_tags_reads_the_end_of_a_long_completion",),
    ),
    Mutation(
        "math-accuracy-missing-solution-zero", "rewards", "plugins/mmr1_math/accuracy.py",
        old="        if gold is None or not gold.strip():\n            continue\n",
        new="        if gold is None or not gold.strip():\n            rewards[i] = 0.0\n            continue\n",
        description="a row without a solution scores 0 instead of None (no opinion)",
        tests=(T_MATH,),
    ),
    Mutation(
        "math-mcq-first-phrase", "rewards", "plugins/mmr1_math/choice.py",
        old="        return found[-1]\n",
        new="        return found[0]\n",
        description="mcq takes the first 'the answer is X' phrase, not the last: a self-correction scores as the first guess",
        tests=(f"{T_MATH}::test_mcq_scores_the_last_answer_phrase_of_a_self_correcting_completion",),
    ),
    Mutation(
        "vision-frame-y-scaled-by-width", "rewards", "plugins/mmr1_vision/frames.py",
        old="return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)",
        new="return (box[0] / sx, box[1] / sx, box[2] / sx, box[3] / sx)",
        description="boxes change frame with y scaled by the width: wrong IoU on non-square images",
        tests=(T_VISION, "tests/test_box_frames.py"),
    ),
    Mutation(
        "vision-perpo-iou-not-squared", "rewards", "plugins/mmr1_vision/grounding.py",
        old="out.append(iou * iou if iou > 0 else -0.2)",
        new="out.append(iou if iou > 0 else -0.2)",
        description="perpo_reward gives IoU instead of IoU^2 for overlapping boxes",
        tests=(T_VISION,),
    ),
    Mutation(
        "vision-detection-unscored-rank-reversed", "rewards", "plugins/mmr1_vision/detection.py",
        old="scores = [float(len(pred) - k) for k in range(len(pred))]",
        new="scores = [float(k) for k in range(len(pred))]",
        description="detection boxes without scores are ranked last-written-first instead of first-written-first",
        tests=(T_VISION,),
    ),
    # -- checkpoint -----------------------------------------------------------------------------
    Mutation(
        "ckpt-lexicographic-order", "checkpoint", CHECKPOINT,
        old="return [p for _, p in sorted(found)]",
        new="return sorted(p for _, p in found)",
        description="checkpoints sort by name: checkpoint-9 counts as newer than checkpoint-10 (resume latest, pruning)",
        tests=(f"{T_MECH}::test_checkpoints_are_ordered_by_step_and_latest_is_the_highest",),
    ),
    Mutation(
        "ckpt-latest-is-oldest", "checkpoint", CHECKPOINT,
        old="return found[-1] if found else None",
        new="return found[0] if found else None",
        description="resume_from_checkpoint: latest resumes from the oldest checkpoint",
        tests=(f"{T_MECH}::test_checkpoints_are_ordered_by_step_and_latest_is_the_highest",),
    ),
    Mutation(
        "ckpt-prune-keeps-oldest", "checkpoint", CHECKPOINT,
        old="for old in list_checkpoints(root)[:-total_limit]:",
        new="for old in list_checkpoints(root)[total_limit:]:",
        description="save_total_limit deletes the newest checkpoints and keeps the oldest",
        tests=(f"{T_MECH}::test_save_checkpoint_writes_every_part_and_keeps_the_newest",),
    ),
    Mutation(
        "ckpt-processor-not-saved", "checkpoint", CHECKPOINT,
        old="        processor.save_pretrained(path)\n",
        new="        pass\n",
        description="a checkpoint's model folder has no tokenizer/processor files",
        tests=(f"{T_MECH}::test_save_checkpoint_writes_every_part_and_keeps_the_newest",),
    ),
    Mutation(
        "ckpt-resume-rollout-step-reset", "checkpoint", TRAINER,
        old='self.global_step, self.rollout_step = state["global_step"], state["rollout_step"]',
        new='self.global_step, self.rollout_step = state["global_step"], 0',
        description="a resumed run restarts the rollout counter, so it re-samples the seeds of the first rollouts",
        tests=(f"{T_TRAINER}::test_resume_gives_the_same_weights",),
    ),
    # -- rollout --------------------------------------------------------------------------------
    Mutation(
        "rollout-seed-ignores-index", "rollout", SAMPLING,
        old="return (run_seed * 1_000_003 + step) * 1_000_033 + index",
        new="return (run_seed * 1_000_003 + step) * 1_000_033",
        description="every completion of a rollout gets the same seed: a group's completions are identical",
        tests=(f"{T_MECH}::test_completion_seeds_differ_across_completions_steps_and_runs",),
    ),
    Mutation(
        "rollout-eos-outside-mask", "rollout", ROLLOUT_HF,
        old="mask = (torch.arange(ids.shape[1], device=device)[None] <= first_end[:, None]).long()",
        new="mask = (torch.arange(ids.shape[1], device=device)[None] < first_end[:, None]).long()",
        description="the end token is not part of the completion mask, so the policy is never trained to stop",
        tests=(f"{T_MECH}::test_hf_rollout_mask_keeps_the_end_token_and_flags_only_unended_rows",),
    ),
    Mutation(
        "rollout-truncation-flag-inverted", "rollout", ROLLOUT_HF,
        old="return Rollout(prompt_index, ids, mask, ~has_end, texts)",
        new="return Rollout(prompt_index, ids, mask, has_end, texts)",
        description="is_truncated marks the completions that did end (mask_truncated_completions drops the wrong ones)",
        tests=(f"{T_MECH}::test_hf_rollout_mask_keeps_the_end_token_and_flags_only_unended_rows",),
    ),
    Mutation(
        "rollout-sampling-ignores-temperature", "rollout", SAMPLING,
        old="scores = filter_logits(logits.float() / temperature, top_k, top_p)",
        new="scores = filter_logits(logits.float(), top_k, top_p)",
        description="sampling ignores the temperature (any positive temperature samples at 1)",
        tests=(f"{T_MECH}::test_sampling_temperature_sharpens_and_flattens_the_distribution",),
    ),
    Mutation(
        "t2i-seeds-shared-across-images", "rollout", IMG_SAMPLING,
        old="seeds = [completion_seed(seed, 0, i) for i in range(s * g, (s + len(chunk)) * g)]",
        new="seeds = [completion_seed(seed, 0, 0) for i in range(s * g, (s + len(chunk)) * g)]",
        description="every image of generate_image_tokens draws from the same stream: a prompt's samples are identical",
        tests=(f"{T_IMG_SAMPLING}::test_a_row_draws_from_its_own_seed_whatever_the_batch",),
    ),
    Mutation(
        "t2i-seeds-restart-per-batch", "rollout", IMG_SAMPLING,
        old="seeds = [completion_seed(seed, 0, i) for i in range(s * g, (s + len(chunk)) * g)]",
        new="seeds = [completion_seed(seed, 0, i) for i in range(len(chunk) * g)]",
        description="seeds count from 0 in every forward batch: an image changes with batch_size",
        tests=(f"{T_IMG_SAMPLING}::test_a_row_draws_from_its_own_seed_whatever_the_batch",),
    ),
    # -- data -----------------------------------------------------------------------------------
    Mutation(
        "data-subsample-ignores-seed", "data", "mmr1/data/dataset.py",
        old="picked = sorted(random.Random(seed).sample(range(len(self.rows)), n))",
        new="picked = sorted(random.Random(0).sample(range(len(self.rows)), n))",
        description="train_sample_size picks the same subset whatever the seed",
        tests=(f"{T_DATA}::test_subsample_is_deterministic_by_seed",),
    ),
    Mutation(
        "data-jsonl-rows-zero-based", "data", "mmr1/data/json_loader.py",
        old="for lineno, line in enumerate(text.splitlines(), start=1):",
        new="for lineno, line in enumerate(text.splitlines()):",
        description="JSONL problems name the line before the faulty one",
        tests=(T_DATA,),
    ),
    Mutation(
        "data-null-solution-accepted", "data", "mmr1/data/rows.py",
        old="if data.get(key) is None and not from_prompt and key not in unresolved:",
        new="if key not in data and not from_prompt and key not in unresolved:",
        description="a row whose problem or solution is null is accepted",
        tests=(f"{T_DATA}::test_null_problem_or_solution_is_reported_like_a_missing_one",),
    ),
    Mutation(
        "data-pil-image-kept-as-is", "data", "mmr1/data/images.py",
        old='    if isinstance(ref, Image.Image):\n        return to_rgb(ref)\n',
        new="    if isinstance(ref, Image.Image):\n        return ref\n",
        description="in-memory PIL images (HF datasets, shapes) are not converted to RGB (RGBA/L reach the processor)",
        tests=(T_DATA,),
    ),
    # -- config ---------------------------------------------------------------------------------
    Mutation(
        "config-bare-flag-false", "config", CONFIG,
        old="overrides[key] = True if not values else",
        new="overrides[key] = False if not values else",
        description="a bare --flag on the command line sets it to false",
        tests=(T_CONFIG, "tests/test_cli.py"),
    ),
    Mutation(
        "config-isl-choice-unchecked", "config", CONFIG,
        old='    "importance_sampling_level": algorithms.IMPORTANCE_SAMPLING_LEVELS.choices,\n',
        new="",
        description="a misspelt importance_sampling_level passes the config check and fails only at the first update",
        tests=(f"{T_CONFIG}::test_every_choice_key_rejects_a_value_outside_its_options",),
    ),
    Mutation(
        "config-alias-reward-funcs-misread", "config", "mmr1/migration.py",
        old='REWARD_FUNCS = Rename("rewards")',
        new='REWARD_FUNCS = Rename("reward_weights")',
        description="trl's and MMR1's reward_funcs key is no longer read as rewards",
        tests=(T_CONFIG, "tests/test_migration_config.py"),
    ),
    Mutation(
        "config-int-truncates-fraction", "config", CONFIG,
        old="if not math.isfinite(number) or number != int(number):",
        new="if not math.isfinite(number):",
        description="an integer key given 2.5 silently becomes 2",
        tests=(T_CONFIG,),
    ),
    # -- pairing checks (setup) -----------------------------------------------------------------
    Mutation(
        "rollout-pairing-unchecked", "rollout", SETUP,
        old="    if backends is not None and backend_cls.name not in backends:",
        new="    if False:",
        description="a text-to-image model on the hf backend passes check and generates text while every image reward fails",
        tests=(T_COMPAT,),
    ),
    Mutation(
        "rewards-needs-unchecked", "rewards", SETUP,
        old="        missing = [n for n in needs if n not in provided]",
        new="        missing = []",
        description="an image reward on a text rollout passes check and fails on every call",
        tests=(T_COMPAT,),
    ),
    Mutation(
        "rewards-r1v-acc-compat-ignored", "rewards", "plugins/mmr1_math/accuracy.py",
        old="    compat = _flag(mmr1_compat)",
        new="    compat = False",
        description="accuracy's mmr1_compat switch does nothing: r1v_acc cannot be made to score as MMR1's",
        tests=("tests/test_rewards_math.py::test_mmr1_compat_scores_as_mmr1s_r1v_acc",),
    ),
    Mutation(
        "rewards-r1v-acc-compat-sides-swapped", "rewards", "plugins/mmr1_math/accuracy.py",
        old='    return None, (text, MMR1_SIDES, gold_text, "raw")',
        new='    return None, (gold_text, "raw", text, "raw")',
        description="mmr1_compat verifies in mmr1's argument order, not MMR1's (verify is not symmetric)",
        tests=("tests/test_reward_specs.py",),
    ),
    Mutation(
        "config-easyr1-reward-kwargs-dropped", "config", "mmr1/migration.py",
        old='    options = given.get("reward_function_kwargs") or {}',
        new='    options = {}',
        description="EasyR1's reward_function_kwargs never reach its reward_function",
        tests=("tests/test_migration_config.py", "tests/test_migration_runs.py"),
    ),
    # -- vision-language SFT ----------------------------------------------------------------------
    Mutation(
        "sft-gradient-accumulation-ignored", "sft", SFT_VLM,
        old="    ga, n = c.gradient_accumulation_steps, acc.num_processes\n",
        new="    ga, n = 1, acc.num_processes\n",
        description="mmr1 sft ignores gradient_accumulation_steps: one micro-batch per optimizer step",
        tests=(f"{T_SFT_VLM}::test_gradient_accumulation_2_of_2_is_one_batch_of_4",),
    ),
    Mutation(
        "sft-scheduler-ignored", "sft", SFT_VLM,
        old="    scheduler = build_scheduler(optimizer, c, steps)\n",
        new="    scheduler = build_scheduler(optimizer, TrainConfig(), steps)\n",
        description="mmr1 sft ignores lr_scheduler_type, warmup_steps/warmup_ratio and lr_scheduler_kwargs (constant lr)",
        tests=(f"{T_SFT_VLM}::test_the_scheduler_sets_the_logged_learning_rate",),
    ),
    Mutation(
        "sft-weight-decay-ignored", "sft", SFT_VLM,
        old="    optimizer = build_optimizer(model, c)\n",
        new="    optimizer = build_optimizer(model, TrainConfig(learning_rate=c.learning_rate))\n",
        description="mmr1 sft ignores weight_decay",
        tests=(f"{T_SFT_VLM}::test_weight_decay_shrinks_every_trained_weight_by_lr_times_decay",),
    ),
    Mutation(
        "sft-max-grad-norm-hard-coded", "sft", SFT_VLM,
        old="grad_norm = acc.clip_grad_norm_(scorer.parameters(), c.max_grad_norm)",
        new="grad_norm = acc.clip_grad_norm_(scorer.parameters(), 1.0)",
        description="mmr1 sft clips gradients to 1.0 whatever max_grad_norm says",
        tests=(f"{T_SFT_VLM}::test_max_grad_norm_clips_what_the_optimizer_sees",),
    ),
    Mutation(
        "sft-save-steps-ignored", "sft", SFT_VLM,
        old="        if c.save_steps and step % c.save_steps == 0 and step < steps:",
        new="        if False:",
        description="mmr1 sft writes no checkpoint-N whatever save_steps says",
        tests=(f"{T_SFT_VLM}::test_save_steps_and_resume_reproduce_the_straight_run",),
    ),
    Mutation(
        "sft-resume-restarts-at-step-0", "sft", SFT_VLM,
        old='        start = load_checkpoint(acc, resume)["global_step"]',
        new="        load_checkpoint(acc, resume)",
        description="a resumed mmr1 sft restarts its step count and data stream at 0 (more steps, other batches)",
        tests=(f"{T_SFT_VLM}::test_save_steps_and_resume_reproduce_the_straight_run",),
    ),
    Mutation(
        "sft-model-not-prepared", "sft", SFT_VLM,
        old="    scorer, optimizer, scheduler = acc.prepare(PolicyScorer(model, adapter), optimizer, scheduler)",
        new="    scorer, (optimizer, scheduler) = PolicyScorer(model, adapter), acc.prepare(optimizer, scheduler)",
        description="mmr1 sft never hands the model to accelerate: not on its device, not wrapped for DDP/FSDP",
        tests=(f"{T_SFT_VLM}::test_the_model_goes_through_accelerate_and_onto_its_device",),
    ),
    Mutation(
        "ckpt-writer-saves-live-partitions", "checkpoint", CHECKPOINT,
        old="    model.save_pretrained(path, state_dict=state, safe_serialization=True)",
        new="    model.save_pretrained(path, safe_serialization=True)",
        description="the writer saves the live parameters, which ZeRO-3 / FSDP hold as shards, not the gathered state",
        tests=(f"{T_SFT_VLM}::test_the_writer_saves_the_gathered_state_not_the_live_partitions",),
    ),
    # -- engine: precision, trainable parts, end of turn -------------------------------------------
    Mutation(
        "build-freeze-vision-ignored", "trainer", BUILD,
        old='        parts = parts - {"vision"}',
        new="        parts = set(parts)",
        description="freeze_vision_tower: true leaves the vision tower trainable",
        tests=(f"{T_TRAINER}::test_freeze_vision_tower_keeps_it_fixed",),
    ),
    Mutation(
        "adapter-projector-is-vision", "trainer", QWEN_VL,
        old='        return "projector" if ".merger." in f".{name}" else "vision"',
        new='        return "vision"',
        description="the Qwen-VL merger counts as vision tower: train_parts projector trains nothing of it",
        tests=(f"{T_OPTIONS}::test_train_parts_change_exactly_their_parameters",),
    ),
    Mutation(
        "build-no-mixed-precision", "trainer", BUILD,
        old='        kwargs["mixed_precision"] = mixed',
        new="        pass",
        description="bf16: true builds an accelerator without mixed precision: the update computes in float32",
        tests=(T_PRECISION,),
    ),
    Mutation(
        "trainer-generate-outside-autocast", "rollout", TRAINER,
        old="        with self.accelerator.autocast():            # the bare policy is outside accelerate's forward wrapper",
        new='        with torch.autocast("cpu", enabled=False):',
        description="rollouts sample from float32 logits while the update scores bf16 ones (off-policy by precision)",
        tests=(T_PRECISION,),
    ),
    Mutation(
        "trainer-reference-outside-autocast", "trainer", TRAINER,
        old="        with self.accelerator.autocast():            # the reference model is not prepared: autocast here",
        new='        with torch.autocast("cpu", enabled=False):',
        description="old and reference log-probs are scored in float32 while the update computes in bf16",
        tests=(T_PRECISION,),
    ),
    Mutation(
        "adapter-eos-ignores-end-of-turn", "rollout", MODELS_BASE,
        old="        ids = {self.tokenizer.eos_token_id} | end_of_turn_ids(self.tokenizer)",
        new="        ids = {self.tokenizer.eos_token_id}",
        description="a chat model whose eos is <|endoftext|> never stops at the end of its turn (<|im_end|>)",
        tests=("tests/test_end_of_turn.py",),
    ),
    Mutation(
        "sft-t2i-own-accelerator", "sft", SFT_T2I,
        old="    accelerator = accelerator or build_accelerator(c, gradient_accumulation_steps=ga)",
        new='    accelerator = accelerator or __import__("accelerate").Accelerator(gradient_accumulation_steps=ga)',
        description="text-to-image SFT builds its own accelerator: bf16: true trains in float32 there",
        tests=(f"{T_PRECISION}::test_both_sft_recipes_follow_the_same_policy",),
    ),
    Mutation(
        "sft-vlm-bf16-weights", "sft", SFT_VLM,
        old='    model = load_policy(adapter_cls, c, precision(c, acc.device.type == "cuda").weights)',
        new="    model = load_policy(adapter_cls, c, torch.bfloat16 if c.bf16 else torch.float32)",
        description="VLM SFT keeps bf16 weights under bf16: true while GRPO keeps float32 ones",
        tests=(f"{T_PRECISION}::test_both_sft_recipes_follow_the_same_policy",),
    ),
]

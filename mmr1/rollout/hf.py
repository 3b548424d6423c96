"""HF generate rollout backend."""

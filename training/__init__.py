"""codescaler.training: reward-model training with TRL and GRPO integration."""

"""Training pieces that TRL no longer ships (PPO was removed in trl 1.13)."""

"""otavatar.training."""

"""otavatar.metrics."""

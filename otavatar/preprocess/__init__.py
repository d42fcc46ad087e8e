"""otavatar.preprocess."""

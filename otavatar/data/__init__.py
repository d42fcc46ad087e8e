"""otavatar.data."""

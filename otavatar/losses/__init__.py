"""otavatar.losses."""

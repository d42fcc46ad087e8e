"""otavatar: one-shot talking face avatars with controllable tri-plane rendering (OTAvatar, CVPR 2023)."""

__version__ = "0.1.0"

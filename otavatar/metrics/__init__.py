"""Evaluation metrics: image quality, FID, identity, expression/pose/keypoint distances, and the suite that runs them."""

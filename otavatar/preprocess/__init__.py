"""Preprocessing real videos and photos: reading, detection, landmarks, crops, 3DMM coefficients, cameras, dataset writing."""

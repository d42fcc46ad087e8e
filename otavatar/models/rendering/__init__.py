"""Tri-plane volume rendering, one module per concept as in EG3D's ``volumetric_rendering``.

``rays`` (ray sampling), ``decoder`` (tri-plane decoder), ``marching`` (ray marching), ``importance``
(importance sampling) and ``renderer`` (the renderer tying them). Nothing is re-exported: importers
name the concept module, so each dependency says which stage it uses.
"""

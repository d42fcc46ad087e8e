"""Pure ``nn.Module`` models: EG3D generator, motion controller, animator."""

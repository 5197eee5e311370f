"""Training and scoring trials on the shared base: each trial's adapter, optimizer and
checkpoint, and a cohort of trials in one forward pass."""

"""Training and scoring trials on the shared base: each trial's adapter, optimizer and
checkpoint, a cohort of trials in one forward pass, and how large a cohort to train."""

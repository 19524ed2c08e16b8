"""A randomized fault campaign against a whole GDTS cluster on this machine (see run)."""

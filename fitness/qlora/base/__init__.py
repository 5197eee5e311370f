"""The 4-bit base model: where it comes from (and its identity), its shape read from its
config alone, and loading and quantizing it once per worker."""

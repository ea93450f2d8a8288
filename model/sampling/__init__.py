"""Building blocks of the sampler (`model.sampler`): pure functions on logits (`logits`) and the exact KV cache of
a committed token sequence (`context`). Kept apart so the benchmark's full-recompute reference can share the
decision rules (sampling, remasking, guidance) while recomputing everything else itself.
"""

"""codescaler.kernels: Triton kernels, each beside its torch reference.

- ``last_token_pool``: gather the pooled rows of the pre-norm hidden states, apply the final RMSNorm and
  the one-label score head in one kernel (``pool`` picks the kernel on CUDA, the reference elsewhere).

Nothing is imported here, so that importing the package does not import Triton (its interpreter mode is
fixed when Triton is first imported).
"""

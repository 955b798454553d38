"""Applies + CounterWriter wired by hand, in random interleavings against a fake
KV: the model machine of ``support.applies_machine`` (its docstring says the
wiring and the model), at random and derandomized with every interleaving.
"""

from __future__ import annotations

from hypothesis import Phase, settings

from support.applies_machine import AppliesMachine

AppliesMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestAppliesWithCounterWriter = AppliesMachine.TestCase


class RealisticAppliesMachine(AppliesMachine):
    """Every interleaving, with crashes of a writer that gave up on conflicts too."""

    CONFLICT_CRASHES = True


# Derandomized (the same examples every run) and not shrunk: the interleavings
# that once broke the contract (bugs 1-5, each reproduced by a test in
# test_core_applies_restarts.py).
RealisticAppliesMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate])
TestRealisticInterleavings = RealisticAppliesMachine.TestCase  # once bugs 1-5, now fixed

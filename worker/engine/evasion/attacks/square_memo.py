"""Square's repeated proposals: a linf proposal already rejected at the same best point needs no query.

A linf proposal of the Square Attack is a function of the sample's best point, its clean input, the
window (side and corner) and the window's sign per channel: evaluated on a deterministic model it
gives the same loss every time. Between two accepted updates a sample's best point does not change,
so a proposal drawn again (same side, corner and signs) would be rejected again: the search state
after it is the same with or without the forward pass. On small images the later, one-pixel windows
make such repeats common (an 8 x 8 grayscale digit has 64 corners and one sign that changes the
pixel, while the search draws thousands of them). `RejectedProposals` remembers, per sample, the
proposals evaluated since its best point last changed, so the search skips their forward passes; a
skipped proposal still counts as a query, as the search without the memo would have made it. Only
for deterministic models (AutoAttack's standard version); the memo is reset whenever the window side
changes (side never grows again) and per sample when its best point changes.
"""

import torch
from torch import Tensor

# Largest memo (samples x keys) kept; beyond it the search runs without one.
MAX_ENTRIES = 1 << 26
# Sign patterns are remembered for images of up to this many channels (2 ** channels patterns).
MAX_CHANNELS = 4


class RejectedProposals:
    """Per sample, the (corner, signs) keys of the current window side evaluated at its best point."""

    def __init__(self, samples: int, channels: int, height: int, width: int, device: torch.device) -> None:
        """An empty memo for a batch of images [samples, channels, height, width]."""
        self.samples, self.channels, self.height, self.width = samples, channels, height, width
        self.device = device
        self.enabled = channels <= MAX_CHANNELS
        self.side = 0
        self.seen = torch.zeros(0, dtype=torch.bool, device=device)
        self.powers = 2 ** torch.arange(channels, device=device)

    def fresh(self, active: Tensor, side: int, rows: Tensor, cols: Tensor, signs: Tensor) -> Tensor | None:
        """Which proposals of the active samples were not evaluated yet (None: no memo); marks them."""
        if not self.enabled:
            return None
        corners = self.width - side + 1
        if side != self.side:
            keys = (self.height - side + 1) * corners * 2**self.channels
            if self.samples * keys > MAX_ENTRIES:
                return None
            self.side, self.seen = side, torch.zeros(self.samples, keys, dtype=torch.bool, device=self.device)
        pattern = ((signs.reshape(len(active), self.channels) > 0).long() * self.powers).sum(dim=1)
        key = (rows.reshape(-1) * corners + cols.reshape(-1)) * 2**self.channels + pattern
        fresh = ~self.seen[active, key]
        self.seen[active, key] = True
        return fresh

    def forget(self, samples: Tensor) -> None:
        """The best point of these samples changed: their earlier rejections no longer hold."""
        if self.side:
            self.seen[samples] = False

"""What a run prints: start-up notes, the progress bar, and a plain line per log step.

Everything goes through tqdm's writer (``tqdm.write``), which clears the bar, prints the
line and redraws the bar, so a note never lands in the middle of the bar's line. The bar is
drawn only when standard error is a terminal; otherwise (CI logs, ``nohup``) each logged
step prints one plain line instead. Only process 0 prints.
"""

from __future__ import annotations

import sys
import time

import jax
from tqdm.auto import tqdm


def narrate(msg: str) -> None:
    """A timestamped note on process 0, printed above any progress bar and flushed at once
    (start-up stages: a hang on a pod is easy to place)."""
    if jax.process_index() == 0:
        tqdm.write(f"[elmjax {time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout)
        sys.stdout.flush()


class Progress:
    """The step counter of a run: a tqdm bar on a terminal, plain lines elsewhere.

    ``total``: the last step; ``initial``: the step the run starts from; ``enabled``: False
    on processes other than 0; ``bar``: force the bar on or off (default: when stderr is a
    terminal).
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, bar: bool | None = None):
        self.enabled = enabled
        self.total = total
        use_bar = enabled and (sys.stderr.isatty() if bar is None else bar)
        self._bar = (tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                          smoothing=0.1, file=sys.stderr) if use_bar else None)

    def advance(self, n: int = 1) -> None:
        """Moves the bar by ``n`` steps."""
        if self._bar is not None:
            self._bar.update(n)

    def report(self, step: int, values: dict) -> None:
        """Shows a logged step: in the bar's postfix, or as one plain line without a bar.

        ``values`` maps short names to already formatted strings.
        """
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(values)
        else:
            fields = " ".join(f"{k}={v}" for k, v in values.items())
            print(f"[elmjax] step {step}/{self.total} {fields}", flush=True)

    def write(self, line: str) -> None:
        """Prints a line above the bar (process 0 only)."""
        if self.enabled:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

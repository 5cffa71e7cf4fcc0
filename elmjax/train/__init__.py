


class TrainingError(RuntimeError):
    """A run cannot continue (e.g. too many non-finite losses in a row, or adapters-only
    checkpoints without their base); the message says why and what to do."""

"""Sub-commands of this area (filled in by its owner)."""


def register(subparsers) -> None:
    """Add this area's sub-commands to the ``descbench`` parser."""

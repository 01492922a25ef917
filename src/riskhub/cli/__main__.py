"""``python -m riskhub.cli``."""

from riskhub.cli import main

main()

"""mailbot: answers licence-key requests sent to claves@ by e-mail."""

__version__ = "0.1.0"

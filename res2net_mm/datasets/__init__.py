"""Datasets that ship with the project's dependencies (no downloads)."""
from .digits import CLASSES as DIGITS_CLASSES
from .digits import prepare_digits

__all__ = ['prepare_digits', 'DIGITS_CLASSES']

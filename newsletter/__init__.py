"""newsletter: a reporter's week of articles, as a weekly email digest."""

__version__ = "0.1.0"

"""Collectors, one module per source kind, all returning `ArticleData`; `run` stores them."""

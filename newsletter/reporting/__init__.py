"""What an editor reads on Monday afternoon: one issue's report, or the last issues side by
side (figures.py), in the terminal, as JSON, or as one self-contained page (page.py)."""

"""The catalogues of every word a reader sees, one `<language>.po` per language
(newsletter/languages.py reads them)."""

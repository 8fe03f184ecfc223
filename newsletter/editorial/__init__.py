"""The editorial side: issue files, rendering, checks, previews, approval and the archive."""

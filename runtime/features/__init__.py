"""Features of many images at once: gathered from folders and feature files, cached on disk."""

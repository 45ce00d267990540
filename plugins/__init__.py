"""Built-in components of unclip, each registered through the same entry-point loader as a third-party plugin."""

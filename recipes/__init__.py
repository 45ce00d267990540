"""unclip recipes and the shipped default model (package data)."""

"""Small shared helpers: box geometry, NMS, letterboxing."""

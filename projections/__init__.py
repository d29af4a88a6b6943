"""The read side: the projector, the read models, queries and rebuilds."""

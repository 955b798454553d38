"""kryten-likes: exact like and play counters for a CyTube channel on the Kryten NATS bus."""

__version__ = "0.1.0"

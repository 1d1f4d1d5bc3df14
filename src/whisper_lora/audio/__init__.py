"""Audio in: decoding any container to 16 kHz mono, and synthetic noise."""

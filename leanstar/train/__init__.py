"""Training: SFT with TRL, and expert-iteration rounds."""

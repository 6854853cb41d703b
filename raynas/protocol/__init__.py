"""The main job's protocols (BN-NAS and BigNAS), from a trained supernet to shipped models."""

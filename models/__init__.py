"""PyTorch reference models: camera geometry, PMBM, trajectory and restoration nets, checkpoint loading."""

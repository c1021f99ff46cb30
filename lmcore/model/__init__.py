"""The model: its config and families (torch-free), the network, the model folder, generation."""

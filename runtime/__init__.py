"""Torch-free execution of a bundle: backends, the Deblurrer API and the command-line tools."""

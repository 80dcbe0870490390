"""Bytes to pixels: the decoder, what a decode renders (size, region) and the file's values as render inputs."""

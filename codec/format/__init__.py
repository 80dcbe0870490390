"""The .gsi file: its layout, entropy coding and integer values; imports nothing that trains or renders."""

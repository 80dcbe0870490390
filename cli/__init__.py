"""The ``gsic`` command: a thin shell over codec (encode, decode, info), service (serve) and bench."""

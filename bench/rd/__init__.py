"""The rate–distortion benchmark (``python -m bench.rd``), one module per job.

- ``plan``: the images, the tasks still to run, and the keys that let a rerun skip finished rows.
- ``run``: running the tasks, here or in worker processes (the only call into the codec's encoder).
- ``store``: the JSON-lines results file.
- ``analysis``: curves per codec and image, averages at each rate, Bjøntegaard deltas.
- ``report``: the markdown section of BENCHMARKS.md.
- ``plot``: the RD and encode-time figures.
- ``cli``: the command line, which ties these together.
"""

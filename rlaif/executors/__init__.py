"""Where the data stages run. ``executor: local`` (default) samples and judges in this
process; ``executor: ray`` hands the same engines and judges to Ray Data actors
(:mod:`rlaif.executors.ray_data`), with the run directory and the judgment store kept by
the driver."""

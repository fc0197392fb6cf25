"""The lecture's claims as experiments: each trains small, otherwise equal nets and measures the claim.

An experiment is one module here that provides

    CLAIM                          the lecture's claim it tests, one sentence
    SETTINGS = {"quick": {...}, "full": {...}}   quick runs in seconds (tests, CI); full is the documented result
    run(settings, progress) -> dict              the measured numbers (JSON-serializable) of one seed
    summary(result, settings) -> dict            its headline numbers, {name: number}
    plot(record, path)                           the figure

`cnnlab.experiments.runner.run_experiment(name, seeds=N)` runs one with seeds 0..N-1 and writes
`experiments/<name>/result.json` (seed 0's numbers, and each headline number's mean ± std over the seeds) and
the figure.
"""

EXPERIMENTS = ("weight-sharing", "invariance", "depth", "hand-vs-learned", "transfer", "explanation-sanity")

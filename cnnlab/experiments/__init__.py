"""The lecture's claims as experiments: each trains small, otherwise equal nets and measures the claim.

An experiment is one module here that provides

    CLAIM                          the lecture's claim it tests, one sentence
    SETTINGS = {"quick": {...}, "full": {...}}   quick runs in seconds (tests, CI); full is the documented result
    run(settings, progress) -> dict              the measured numbers (JSON-serializable)
    plot(result, path)                           the figure

`cnnlab.experiments.runner.run_experiment(name)` runs one and writes `experiments/<name>/result.json` + figure.
"""

EXPERIMENTS = ("weight-sharing", "invariance", "depth", "hand-vs-learned", "transfer", "explanation-sanity")

import os
import sys

from cnnlab.cli import main

code = main()
if "RANK" in os.environ and "cnnlab.train.distributed" in sys.modules:  # a process that torchrun started
    from cnnlab.train.distributed import exit_rank

    exit_rank(code)
raise SystemExit(code)

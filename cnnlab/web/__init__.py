"""The web explorer: draw a digit and watch every layer of any cnnlab run (or registered model) respond.

`create_app(runs)` builds the FastAPI app; `cnnlab serve` runs it with Uvicorn.
"""

from cnnlab.web.app import create_app

__all__ = ["create_app"]

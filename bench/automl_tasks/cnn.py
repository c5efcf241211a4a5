"""The cnn task (bench/_automl_tasks.py) as a trial session of the AutoML benchmark."""

import nsml  # noqa: F401  (the platform's library: _session reports and saves through it)
from _session import main

if __name__ == "__main__":
    main("cnn")

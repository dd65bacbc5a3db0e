"""Runs one checkpointed `tiny` search (resuming if a checkpoint exists) and writes its arch as JSON."""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

if __name__ == "__main__":
    import os

    sys.path.insert(0, os.path.dirname(__file__))
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from search_helpers import tiny_search

    SMALL = dict(n_train=48, n_val=16)

    checkpoint_dir, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strategy = tiny_search(evaluator_kwargs=SMALL, lambda_=0.05, epochs=epochs, checkpoint_dir=checkpoint_dir,
                           resume=True)
    with open(out, "w") as f:
        json.dump({"arch": strategy.result["arch"], "metric": strategy.result["metric"]}, f)

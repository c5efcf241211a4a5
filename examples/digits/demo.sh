#!/usr/bin/env bash
# The digits example end to end on the embedded server: make the dataset, push it with a
# leaderboard, train as a session, follow its logs, list its checkpoints, submit the last one
# for scoring on the hidden test split and print the board. Run from anywhere: examples/digits/demo.sh
set -euo pipefail
cd "$(dirname "$0")"

python make_dataset.py data/digits
nsml dataset push -f --leaderboard --metric accuracy --desc "scikit-learn digits, 8x8 images" digits data/digits
started=$(nsml run -d digits -a "--epochs 10 --lr 0.01" -m "digits demo")
echo "$started"
session=${started#Session }
session=${session% is started}
nsml logs -f "$session"
nsml ps -a -n 3
nsml model ls "$session"
nsml submit "$session" 9
nsml dataset board digits

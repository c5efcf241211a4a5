"""A hostile training script in the NSML style: it runs the attack families named by --attacks
(probes.py) when trained, and again inside infer() when the platform relaunches it for a submit
(with the test data and no labels) or an infer session; it saves a checkpoint so that it can be
submitted at all."""
import argparse
import os

import nsml
import probes

p = argparse.ArgumentParser()
p.add_argument("--attacks", default="token,network,labels,privilege,processes")
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
config = p.parse_args()
names = [n for n in config.attacks.split(",") if n]


def save(folder, **kwargs):
    with open(os.path.join(folder, "model"), "w") as f:
        f.write("a model\n")


def load(folder, **kwargs):
    print("model loaded!", flush=True)


def infer(data, **kwargs):
    report = probes.run(names)
    if isinstance(data, str):  # a submit: the path of the test data, one row a line
        with open(data) as f:
            rows = [line for line in f if line.strip()]
        return [(0.5, 0)] * len(rows)
    return [report] + [""] * (len(data) - 1)  # an infer session: the owner reads the report


nsml.bind(save=save, load=load, infer=infer)
if config.pause:
    nsml.paused(scope=locals())
else:
    probes.run(names)
    nsml.save("0")

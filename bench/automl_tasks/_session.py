"""One trial as an NSML session (bench/automl_compare.py): the task's hyper-parameters as
`--name value`, the validation accuracy reported as val/acc every epoch and nsml.save after
each, with nsml.bind save/load so stop-and-go (nsml pause / resume) and PBT's forks go on from
the checkpoint. `started` (the process's first line, before the heavy imports) is reported with
the first epoch, so the benchmark can split a trial's start into platform and interpreter time."""

import time

STARTED = time.time()

import argparse  # noqa: E402
import os  # noqa: E402

import nsml  # noqa: E402

IMPORTED = time.time()


def main(task: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core a trial, as every strategy gets
    import _automl_tasks as tasks

    cls = tasks.TASKS[task]
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="train")
    p.add_argument("--pause", type=int, default=0)
    p.add_argument("--iteration", default=None)
    p.add_argument("--epochs", type=int, default=cls.max_epochs)
    p.add_argument("--seed", type=int, default=0)
    for name, spec in cls.space.items():
        kind = {"int": int, "float": float, "str": str}[spec.get("type", "float")]
        p.add_argument(f"--{name}", type=kind, required=True)
    c = p.parse_args()
    held = {}  # the trainer, once built: bound first, so the platform may pause the trial from the start

    def save(folder):
        with open(os.path.join(folder, "state.bin"), "wb") as f:
            f.write(held["trainer"].state())

    def load(folder):
        with open(os.path.join(folder, "state.bin"), "rb") as f:
            held["blob"] = f.read()

    nsml.bind(save=save, load=load)
    trainer = held["trainer"] = cls({k: getattr(c, k) for k in cls.space}, seed=c.seed)
    print(f"[bench] process start +{time.time() - STARTED:.2f} s: {task} built (nsml imported at +{IMPORTED - STARTED:.2f} s)", flush=True)
    if c.pause:
        nsml.paused(scope=locals())
    if "blob" in held:
        trainer.restore(held["blob"])
    first = True
    while trainer.epochs < c.epochs:
        score = trainer.epoch()
        epoch = trainer.epochs - 1  # epochs count from 0, as the study's compare steps do
        extra = {"started": STARTED} if first else {}
        first = False
        nsml.report(step=epoch, epoch=epoch, val__acc=score, **extra)
        nsml.save(epoch)

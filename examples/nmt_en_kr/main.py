"""English→Korean translator written the way NSML users write entry files.

    nsml run -d NMT_EN_KR -a "--epochs 30"
    echo Hello | nsml infer OWNER/NMT_EN_KR/1/best        # 안녕하세요

Also runs unchanged as plain Python: `python main.py --data /tmp/nmt_data` trains and saves to
./nsml_checkpoints; `python main.py --data /tmp/nmt_data --mode test_local` then translates
stdin with the checkpoint named by --iteration (default best).

The model is a GRU encoder-decoder with attention (Luong, "general" score): English words in,
Korean characters out, so particles chosen by the final consonant (책을 / 사과를) are spelled, not
looked up. Greedy decoding; everything is seeded, so the same data and arguments give the same
model on the same machine.
"""

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import nsml
from nsml import DATASET_PATH, HAS_DATASET, IS_ON_NSML

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
MAX_OUTPUT_CHARS = 60


def normalise(text):
    """'Hello!', 'hello' and ' HELLO. ' are the same input: lowercase words, no punctuation."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return re.sub(r"[^a-z0-9]+", " ", text).split()


class Vocab:
    def __init__(self, tokens):
        self.tokens = SPECIALS + sorted(set(tokens) - set(SPECIALS))
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, tokens):
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids):
        return [self.tokens[i] for i in ids if i >= len(SPECIALS)]


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder; GRU decoder whose states attend over the encoder's outputs."""

    def __init__(self, src_size, tgt_size, emb=64, hidden=128, dropout=0.1):
        super().__init__()
        self.src_emb = nn.Embedding(src_size, emb, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(tgt_size, emb, padding_idx=PAD)
        self.encoder = nn.GRU(emb, hidden // 2, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(hidden, hidden)
        self.decoder = nn.GRU(emb, hidden, batch_first=True)
        self.score = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, tgt_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, src, lengths):
        packed = pack_padded_sequence(self.drop(self.src_emb(src)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, last = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        state = torch.tanh(self.bridge(torch.cat([last[0], last[1]], dim=-1))).unsqueeze(0)
        return outputs, state, src != PAD

    def decode(self, prev, state, memory, mask):
        """Target tokens `prev` (batch, steps) → logits (batch, steps, vocab) and the new state."""
        states, state = self.decoder(self.drop(self.tgt_emb(prev)), state)
        scores = torch.bmm(self.score(states), memory.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=-1), memory)
        mixed = torch.tanh(self.combine(torch.cat([states, context], dim=-1)))
        return self.out(self.drop(mixed)), state

    def forward(self, src, lengths, tgt_in):
        memory, state, mask = self.encode(src, lengths)
        logits, _ = self.decode(tgt_in, state, memory, mask)
        return logits


class Translator:
    """The model with its vocabularies: what a checkpoint holds, and what infer uses."""

    def __init__(self, emb=64, hidden=128, dropout=0.1):
        self.settings = {"emb": emb, "hidden": hidden, "dropout": dropout}
        self.src = self.tgt = self.net = None

    def build(self, english, korean):
        self.src = Vocab(w for line in english for w in normalise(line))
        self.tgt = Vocab(ch for line in korean for ch in line)
        self.net = Seq2Seq(len(self.src.tokens), len(self.tgt.tokens), **self.settings)

    def batch_source(self, lines):
        ids = [self.src.encode(normalise(line)) or [UNK] for line in lines]
        lengths = torch.tensor([len(x) for x in ids])
        src = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)
        for i, x in enumerate(ids):
            src[i, :len(x)] = torch.tensor(x)
        return src, lengths

    def batch_target(self, lines):
        ids = [[BOS] + self.tgt.encode(line) + [EOS] for line in lines]
        tgt = torch.full((len(ids), max(map(len, ids))), PAD, dtype=torch.long)
        for i, x in enumerate(ids):
            tgt[i, :len(x)] = torch.tensor(x)
        return tgt

    @torch.no_grad()
    def translate(self, lines, batch_size=256):
        """Greedy decoding, a batch at a time; an input with no words at all gives ''."""
        self.net.eval()
        results = []
        for start in range(0, len(lines), batch_size):
            chunk = lines[start:start + batch_size]
            src, lengths = self.batch_source(chunk)
            memory, state, mask = self.net.encode(src, lengths)
            prev = torch.full((len(chunk), 1), BOS, dtype=torch.long)
            steps, done = [], torch.zeros(len(chunk), dtype=torch.bool)
            for _ in range(MAX_OUTPUT_CHARS):
                logits, state = self.net.decode(prev, state, memory, mask)
                prev = logits[:, -1].argmax(-1, keepdim=True)
                steps.append(prev)
                done |= prev.squeeze(1) == EOS
                if done.all():
                    break
            for line, ids in zip(chunk, torch.cat(steps, dim=1).tolist()):
                ids = ids[:ids.index(EOS)] if EOS in ids else ids
                results.append("".join(self.tgt.decode(ids)) if normalise(line) else "")
        return results

    def save(self, dir_path):
        torch.save(self.net.state_dict(), os.path.join(dir_path, "model.pt"))
        with open(os.path.join(dir_path, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({"settings": self.settings, "source": self.src.tokens, "target": self.tgt.tokens},
                      f, ensure_ascii=False)

    def load(self, dir_path):
        with open(os.path.join(dir_path, "vocab.json"), encoding="utf-8") as f:
            saved = json.load(f)
        self.settings = saved["settings"]
        self.src, self.tgt = Vocab(saved["source"]), Vocab(saved["target"])
        self.net = Seq2Seq(len(self.src.tokens), len(self.tgt.tokens), **self.settings)
        self.net.load_state_dict(torch.load(os.path.join(dir_path, "model.pt"), weights_only=True))
        self.net.eval()


def bind_model(model):
    def save(dir_path, **kwargs):
        model.save(dir_path)

    def load(dir_path, **kwargs):
        model.load(dir_path)
        print("model loaded!")

    def infer(raw_data, **kwargs):
        """A list of English sentences → a list of Korean sentences, one per input."""
        if isinstance(raw_data, str):
            if os.path.isfile(raw_data):  # a path to a file of sentences, one per line
                with open(raw_data, encoding="utf-8") as f:
                    raw_data = f.read().splitlines()
            else:
                raw_data = [raw_data]
        return model.translate([str(line) for line in raw_data])

    nsml.bind(save=save, load=load, infer=infer)


def read_pairs(root, split):
    def lines(name):
        with open(os.path.join(root, split, f"{split}_{name}"), encoding="utf-8") as f:
            return f.read().splitlines()
    return list(zip(lines("data"), lines("label")))


def normalised(pairs):
    return [(" ".join(normalise(en)), ko) for en, ko in pairs]


def exact_match(model, pairs):
    predictions = model.translate([en for en, _ in pairs])
    return sum(p == ko for p, (_, ko) in zip(predictions, pairs)) / max(len(pairs), 1)


def train(model, pairs, config):
    rng = random.Random(config.seed)
    # Validate on sentences the corpus has once (not the repeated greetings), as test/ would.
    once = sorted(p for p, n in Counter(normalised(pairs)).items() if n == 1)
    val = set(rng.sample(once, max(1, len(once) // 20)))
    train_pairs = [p for p in pairs if (" ".join(normalise(p[0])), p[1]) not in val]
    val = sorted(val)
    model.build([en for en, _ in pairs], [ko for _, ko in pairs])
    net = model.net
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    best = -1.0
    for epoch in range(config.epochs):
        started = time.time()
        net.train()
        rng.shuffle(train_pairs)
        total, batches = 0.0, 0
        for start in range(0, len(train_pairs), config.batch):
            chunk = train_pairs[start:start + config.batch]
            src, lengths = model.batch_source([en for en, _ in chunk])
            tgt = model.batch_target([ko for _, ko in chunk])
            logits = net(src, lengths, tgt[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
            batches += 1
        val_exact = exact_match(model, val)
        nsml.report(summary=True, scope=locals(), step=epoch, epoch=epoch, epoch_total=config.epochs,
                    train__loss=total / batches, val__exact=val_exact)
        print(f"epoch {epoch + 1}/{config.epochs}: loss {total / batches:.4f}, "
              f"validation exact match {val_exact:.3f} ({time.time() - started:.1f} s)", flush=True)
        nsml.save(epoch)
        if val_exact > best:
            best = val_exact
            nsml.save("best")
    return model


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--mode", type=str, default="train")  # reserved
    p.add_argument("--pause", type=int, default=0)  # reserved
    p.add_argument("--iteration", type=str, default="0")  # reserved
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=str, default="data/nmt_en_kr", help="dataset folder when run off NSML")
    config = p.parse_args()

    root = DATASET_PATH if (HAS_DATASET or IS_ON_NSML) else config.data  # off NSML: a local folder
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = Translator(emb=config.emb, hidden=config.hidden, dropout=config.dropout)
    bind_model(model)
    if config.pause:
        nsml.paused(scope=locals())

    if config.mode == "train":
        train(model, read_pairs(root, "train"), config)
    elif config.mode == "test_local":  # off NSML: translate stdin with a saved checkpoint
        nsml.load(config.iteration if config.iteration != "0" else "best")
        for line in nsml.infer(sys.stdin.read().splitlines()):
            print(line)

"""Identity- and posture-balanced triplet batches (a P x K sampler over (identity, posture) cells).

Every batch holds P distinct identities with K anchors each; an identity's K anchors take K different
postures (all five when K = 5), rotating so that over an epoch each identity's postures are used
equally. Inside a cell (identity, posture) the concealed captures are drawn from a shuffled cycle.
The positive is an unconcealed capture of the same cell, the negative an unconcealed capture of the
same posture and another identity. An epoch is ceil(anchors / (P K)) batches. Everything is drawn
from numpy's Generator seeded with (seed, epoch), so an epoch is the same whether or not the run was
resumed in between.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import TripletIndex


@dataclass
class TripletBatch:
    anchor: np.ndarray     # (B,) positions into TripletIndex.anchors (target = index.target[anchor])
    positive: np.ndarray   # (B,) THz indices
    negative: np.ndarray   # (B,) THz indices


class BalancedTripletSampler:
    def __init__(self, index: TripletIndex, n_identities: int, per_identity: int, seed: int):
        if n_identities < 2 or per_identity < 1:
            raise ValueError(f"need n_identities >= 2 and per_identity >= 1, got {n_identities=}, {per_identity=}")
        self.index = index
        d = index.data
        cells: dict[tuple[int, int], list[int]] = {}
        for j, a in enumerate(index.anchors):
            cells.setdefault((int(d.identity[a]), int(d.posture[a])), []).append(j)
        self.cell_anchors = {k: np.array(v, np.int64) for k, v in sorted(cells.items())}
        self.identities = sorted({k[0] for k in self.cell_anchors})
        if len(self.identities) < 2:
            raise ValueError(f"triplets need at least 2 identities with anchors, found {self.identities}")
        self.postures_of = {i: [p for (ii, p) in self.cell_anchors if ii == i] for i in self.identities}
        self.P = min(n_identities, len(self.identities))
        self.K = per_identity
        self.seed = seed

    @property
    def batch_size(self) -> int:
        return self.P * self.K

    def __len__(self) -> int:
        return -(-len(self.index) // self.batch_size)

    def epoch(self, epoch: int) -> list[TripletBatch]:
        rng = np.random.default_rng([self.seed, epoch])
        pools = {k: rng.permutation(v) for k, v in self.cell_anchors.items()}
        ptr = dict.fromkeys(pools, 0)
        post_ptr = {i: int(rng.integers(len(self.postures_of[i]))) for i in self.identities}
        queue: list[int] = []
        batches = []
        for _ in range(len(self)):
            chosen: list[int] = []
            while len(chosen) < self.P:
                if not queue:
                    queue = [int(i) for i in rng.permutation(self.identities)]
                i = next((q for q in queue if q not in chosen), None)
                if i is None:  # the rest of the queue is already in this batch: start a new cycle
                    queue += [int(q) for q in rng.permutation(self.identities)]
                    continue
                queue.remove(i)
                chosen.append(i)
            anchors, positives, negatives = [], [], []
            for i in chosen:
                posts = self.postures_of[i]
                for _k in range(self.K):
                    p = posts[post_ptr[i] % len(posts)]
                    post_ptr[i] += 1
                    pool = pools[(i, p)]
                    j = int(pool[ptr[(i, p)] % len(pool)])
                    ptr[(i, p)] += 1
                    pos_pool = self.index.cells[(i, p)]
                    neg_pool = self.index.negatives_for(j)
                    if len(neg_pool) == 0:
                        raise ValueError(f"posture {p} has no unconcealed capture of an identity other than {i}")
                    anchors.append(j)
                    positives.append(int(pos_pool[rng.integers(len(pos_pool))]))
                    negatives.append(int(neg_pool[rng.integers(len(neg_pool))]))
            batches.append(TripletBatch(np.array(anchors), np.array(positives), np.array(negatives)))
        return batches

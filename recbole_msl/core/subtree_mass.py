"""A second model's item distribution as masses on the title trie, for guided beam search.

For a trie node n let M(n) be the total probability the assistant gives the items whose title passes
through n. Extending n by a token towards child c multiplies the title's assistant probability by
M(c) / M(n), so over a whole title these factors telescope to M(leaf) / M(root): the assistant's
probability of the title's items, renormalised over the items that have a title.

No per-node table is kept per user. Leaves are numbered depth first (the order of the titles'
token sequences), so every subtree covers a contiguous range of leaf ranks
(:class:`SubtreeRanges`, computed once per trie in O(nodes + leaves x depth)); one cumulative sum
over a user's leaf masses then gives any node's mass as a difference of two entries (O(1)).

Items that share a title share its leaf: the leaf's mass is the sum of their probabilities, and
every item of the title gets the title's score (as the LLM's own score of a title is shared).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .trie import TokenTrie, _count_up


@dataclass
class SubtreeRanges:
    """Depth-first leaf ranks: node n's subtree holds the leaves ranked ``first[n] <= r < end[n]``."""

    first: torch.Tensor  # [n_nodes] int64
    end: torch.Tensor  # [n_nodes] int64
    item_rank: torch.Tensor  # [n_items] int64: depth-first rank of the item's leaf, -1 for items without a title
    num_leaves: int

    @classmethod
    def of(cls, trie: TokenTrie) -> SubtreeRanges:
        """Ranges from the trie's breadth-first layout (children contiguous, sorted by token, parents in order).

        A node's first rank is its parent's plus the leaves under its elder siblings; nodes are visited a
        depth level at a time, since every level is a contiguous block of node ids.
        """
        n_nodes, device = trie.num_nodes, trie.child_ptr.device
        parent = torch.cat([trie.edge_key.new_zeros(1), trie.edge_key // trie.vocab_span])  # [n_nodes]
        leaf_nodes = (trie.node_leaf >= 0).nonzero().squeeze(1)  # leaf id l sits at node leaf_nodes[l]
        below = _count_up(parent, leaf_nodes, n_nodes)  # [n_nodes] leaves in each subtree
        # leaves under the elder siblings of each child node: an exclusive cumulative sum within each parent's edges
        through = torch.cumsum(below[1:], 0)  # [n_edges] inclusive, over edges in order
        group_start = trie.child_ptr[parent[1:]]  # first edge of each edge's parent
        before_group = torch.where(group_start > 0, through[(group_start - 1).clamp(min=0)], torch.zeros_like(group_start))
        elder = through - below[1:] - before_group  # [n_edges]
        first = torch.zeros(n_nodes, dtype=torch.long, device=device)
        level_start, level_end = 0, 1  # node ids of the current depth level
        while level_end > level_start:
            child_start = int(trie.child_ptr[level_start]) + 1
            child_end = int(trie.child_ptr[level_end]) + 1
            if child_end > child_start:
                nodes = torch.arange(child_start, child_end, device=device)
                first[nodes] = first[parent[nodes]] + elder[nodes - 1]
            level_start, level_end = child_start, child_end
        leaf_rank = first[leaf_nodes]  # [n_leaves]
        item_rank = torch.where(trie.item_leaf >= 0, leaf_rank[trie.item_leaf.clamp(min=0)],
                                torch.full_like(trie.item_leaf, -1))
        return cls(first=first, end=first + below, item_rank=item_rank, num_leaves=int(leaf_nodes.numel()))

    def to(self, device) -> SubtreeRanges:
        return SubtreeRanges(self.first.to(device), self.end.to(device), self.item_rank.to(device), self.num_leaves)

    def masses(self, item_log_probs: torch.Tensor) -> UserMasses:
        """Per-user cumulative leaf masses from the assistant's log-probabilities [U, n_items] (padding: -inf)."""
        probs = item_log_probs.double().exp()
        titled = self.item_rank >= 0
        leaf_mass = probs.new_zeros(probs.size(0), self.num_leaves)
        leaf_mass.index_add_(1, self.item_rank[titled], probs[:, titled])
        cumulative = torch.cat([leaf_mass.new_zeros(probs.size(0), 1), leaf_mass.cumsum(1)], 1)  # [U, leaves + 1]
        return UserMasses(self, cumulative, _range_max_table(leaf_mass))


# a range-maximum table costs users x leaves x log2(leaves) entries; above this many, the search's stopping bound
# uses the subtree's whole mass instead of its largest title's (exact either way, only looser)
RANGE_MAX_ENTRIES = 1 << 24


def _range_max_table(leaf_mass: torch.Tensor) -> list[torch.Tensor] | None:
    """Sparse table of the leaf masses [U, L]: level k holds the max over leaves [i, i + 2^k) (None when too big)."""
    users, leaves = leaf_mass.shape
    if leaves == 0 or users * leaves * max(leaves.bit_length(), 1) > RANGE_MAX_ENTRIES:
        return None
    table = [leaf_mass]
    width = 1
    while 2 * width <= leaves:
        previous = table[-1]
        table.append(torch.maximum(previous[:, :-width], previous[:, width:]))
        width *= 2
    return table


@dataclass
class UserMasses:
    """Cumulative leaf masses of a batch of users; :meth:`log_share` answers a node's log M(n) / M(root), and
    :meth:`log_best_share` the largest single title's under a node (the search's stopping bound)."""

    ranges: SubtreeRanges
    cumulative: torch.Tensor  # [U, n_leaves + 1] float64
    range_max: list[torch.Tensor] | None = None  # _range_max_table of the leaf masses

    def log_best_share(self, users: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """log(max over the titles below ``nodes`` of M(title) / M(root)) [N, D]: no title finished below a node can
        have a larger assistant term. Without a range-max table, the node's own share (a looser bound)."""
        if self.range_max is None:
            return self.log_share(users, nodes)
        first, end = self.ranges.first[nodes], self.ranges.end[nodes]
        length = (end - first).clamp(min=1)
        level = (torch.log2(length.double()).floor().long()).clamp(max=len(self.range_max) - 1)
        rows = users.unsqueeze(1).expand_as(nodes)
        best = torch.zeros(nodes.shape, dtype=torch.float64, device=nodes.device)
        for k in torch.unique(level).tolist():  # one gather pair per level present
            at = level == k
            table = self.range_max[k]
            left = table[rows[at], first[at].clamp(max=table.size(1) - 1)]
            right = table[rows[at], (end[at] - (1 << k)).clamp(min=0, max=table.size(1) - 1)]
            best[at] = torch.maximum(left, right)
        total = self.cumulative[users, -1].unsqueeze(1)
        return (best.clamp(min=torch.finfo(torch.float64).tiny) / total).log()

    def log_share(self, users: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """log(M(node) / M(root)) for each ``users`` [N] row and its ``nodes`` [N, D] (float64, <= 0).

        A node whose items the assistant gives no probability in float64 (or a difference of cumulative sums
        that rounds to zero or below) gets float64's smallest positive mass, so its log stays finite but far below
        any real title's.
        """
        rows = users.unsqueeze(1).expand_as(nodes)
        mass = (self.cumulative[rows, self.ranges.end[nodes]] - self.cumulative[rows, self.ranges.first[nodes]])
        total = self.cumulative[users, -1].unsqueeze(1)
        return (mass.clamp(min=torch.finfo(torch.float64).tiny) / total).log()

"""A token trie over all item titles, stored as flat arrays.

Training (valid-token sets for MSL) and decoding (constrained beam search) share
one instance, so the two can never disagree about which tokens are valid.

Layout (breadth-first, children of a node contiguous and sorted by token):
  * node 0 is the root; edge ``e`` leads from ``edge_parent[e]`` to node ``e + 1``;
  * ``child_ptr[n] : child_ptr[n + 1]`` are the edges leaving node ``n``;
  * ``edge_token[e]`` is the token on edge ``e``;
  * a leaf is a node reached by the final token of a sequence (every sequence
    ends with EOS, so no sequence is a prefix of another); ``node_leaf[n]`` is
    its leaf index or -1, and ``leaf_item_ptr``/``leaf_items`` list the items
    that spell that sequence (several items may share one title);
  * ``node_height[n]`` is the most tokens from node ``n`` down to a leaf (the
    root's is the longest sequence), an exact bound for beam-search stopping.

The build sorts the padded token matrix once and walks it column by column, so
it costs O(T * L log T) time and O(T * L) memory for T titles of length <= L:
nothing is quadratic in the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

PAD = -1


def _padded_matrix(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """[T, L] int32 matrix of the sequences, right-padded with PAD, and their lengths."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    if len(sequences) == 0 or lengths.min() == 0:
        raise ValueError("every trie sequence needs at least one token")
    flat = np.fromiter(chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
    if flat.min() < 0:
        raise ValueError("token ids must be non-negative")
    matrix = np.full((len(sequences), int(lengths.max())), PAD, dtype=np.int32)
    matrix[np.arange(matrix.shape[1]) < lengths[:, None]] = flat  # row-major fill = the sequences in order
    return matrix, lengths


def _lexicographic_order(matrix: np.ndarray) -> np.ndarray:
    """Stable lexicographic row order of a PAD-padded matrix (PAD sorts first).

    Tokens + 1 (PAD -> 0) are packed several per uint64 word, order-preserving, so the stable sort
    runs over a few words per row instead of one key per column.
    """
    bits = max((int(matrix.max()) + 1).bit_length(), 1)
    per_word = 64 // bits
    keys = []
    for start in range(0, matrix.shape[1], per_word):
        key = np.zeros(matrix.shape[0], dtype=np.uint64)
        for col in range(start, start + per_word):
            key <<= np.uint64(bits)
            if col < matrix.shape[1]:
                key |= (matrix[:, col] + 1).astype(np.uint64)  # PAD -> 0
        keys.append(key)
    return np.lexsort(keys[::-1])  # the first word is the primary key


def _group_items(items_of_sequence, order, leaf_of_row, n_leaves):
    """Items of every leaf, concatenated by leaf id (within a leaf: sorted-row order, then list order).

    Vectorised: one entry per (sequence, item), stably sorted by (leaf, row); returns (items, counts per leaf).
    """
    per_seq = np.fromiter(map(len, items_of_sequence), dtype=np.int64, count=len(items_of_sequence))
    items = np.fromiter(chain.from_iterable(items_of_sequence), dtype=np.int64, count=int(per_seq.sum()))
    row_of_seq = np.empty(len(order), dtype=np.int64)
    row_of_seq[order] = np.arange(len(order))
    entry_row = np.repeat(row_of_seq, per_seq)  # [E] sorted row of each entry's sequence
    entry_leaf = leaf_of_row[entry_row]  # [E]
    grouped = np.lexsort((entry_row, entry_leaf))  # stable: by leaf, then row, then list position
    return items[grouped], np.bincount(entry_leaf, minlength=n_leaves).astype(np.int64)


@dataclass
class TokenTrie:
    child_ptr: torch.Tensor  # [n_nodes + 1] int64
    edge_token: torch.Tensor  # [n_edges] int64
    edge_key: torch.Tensor  # [n_edges] int64: parent * vocab_span + token, sorted
    node_leaf: torch.Tensor  # [n_nodes] int64, -1 for inner nodes
    node_height: torch.Tensor  # [n_nodes] int64: most tokens from the node to a leaf (bounds beam search)
    leaf_item_ptr: torch.Tensor  # [n_leaves + 1] int64
    leaf_items: torch.Tensor  # [n_items_with_text] int64
    item_leaf: torch.Tensor  # [n_items] int64, -1 for items without a sequence
    vocab_span: int
    max_depth: int

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, sequences: list[list[int]], items_of_sequence: list[list[int]], n_items: int) -> TokenTrie:
        """Build from token sequences (each ending with EOS) and the item ids spelled by each."""
        if len(sequences) != len(items_of_sequence):
            raise ValueError("need one item list per sequence")
        matrix, lengths = _padded_matrix(sequences)
        n_seq, width = matrix.shape
        order = _lexicographic_order(matrix)  # rows sorted lexicographically
        columns = np.ascontiguousarray(matrix[order].T)  # [L, T]: sorted rows, one contiguous array per column
        del matrix
        lengths = lengths[order]

        # lcp[i]: first column where sorted row i differs from row i - 1 (width if equal)
        lcp = np.full(n_seq, width, dtype=np.int64)
        lcp[0] = 0
        for col in range(width):
            undecided = lcp[1:] == width
            differs = columns[col, 1:] != columns[col, :-1]
            lcp[1:][undecided & differs] = col

        parents, tokens, first_ids = [], [], []
        node_of_row = np.zeros(n_seq, dtype=np.int64)  # node reached by each row so far
        leaf_node_of_row = np.zeros(n_seq, dtype=np.int64)
        next_id = 1
        for col in range(width):
            alive = columns[col] != PAD
            new = alive & (lcp <= col)
            n_new = int(new.sum())
            ids = np.where(new, next_id + np.cumsum(new) - 1, 0)
            parents.append(node_of_row[new])
            first_ids.append(next_id)  # this column's new nodes are next_id ... next_id + n_new - 1
            tokens.append(columns[col][new])  # int32 until all columns are joined
            # rows that share the prefix inherit the node opened by the first of them
            node_of_row = np.where(alive, np.maximum.accumulate(ids), node_of_row)
            ends = lengths == col + 1
            leaf_node_of_row[ends] = node_of_row[ends]
            next_id += n_new

        del columns, lcp
        node_height = np.zeros(next_id, dtype=np.int64)
        for parent, first in zip(reversed(parents), reversed(first_ids)):  # deepest column first
            np.maximum.at(node_height, parent, node_height[first:first + len(parent)] + 1)
        edge_parent = np.concatenate(parents)
        del parents
        edge_token = np.concatenate(tokens).astype(np.int64)
        del tokens
        n_nodes = next_id
        # edges are grouped by parent in increasing order, so the CSR offsets are a cumulative count
        child_ptr = np.concatenate([[0], np.cumsum(np.bincount(edge_parent, minlength=n_nodes))])
        vocab_span = int(edge_token.max()) + 1
        edge_key = edge_parent * vocab_span + edge_token
        del edge_parent

        # leaves: identical sequences share one leaf and pool their items
        leaf_nodes, leaf_of_row = np.unique(leaf_node_of_row, return_inverse=True)
        node_leaf = np.full(n_nodes, -1, dtype=np.int64)
        node_leaf[leaf_nodes] = np.arange(len(leaf_nodes))
        item_leaf = np.full(n_items, -1, dtype=np.int64)
        leaf_items, counts = _group_items(items_of_sequence, order, leaf_of_row.reshape(-1), len(leaf_nodes))
        if len(leaf_items):
            item_leaf[leaf_items] = np.repeat(np.arange(len(leaf_nodes)), counts)

        as_t = torch.from_numpy
        return cls(
            child_ptr=as_t(child_ptr.astype(np.int64, copy=False)),
            edge_token=as_t(edge_token),
            edge_key=as_t(edge_key),
            node_leaf=as_t(node_leaf),
            node_height=as_t(node_height),
            leaf_item_ptr=as_t(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)),
            leaf_items=as_t(leaf_items),
            item_leaf=as_t(item_leaf),
            vocab_span=vocab_span,
            max_depth=int(lengths.max()),
        )

    # ---------------------------------------------------------------- queries
    @property
    def num_nodes(self) -> int:
        return self.child_ptr.numel() - 1

    @property
    def num_leaves(self) -> int:
        return self.leaf_item_ptr.numel() - 1

    def to(self, device) -> TokenTrie:
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return TokenTrie(**fields)

    def num_children(self, nodes: torch.Tensor) -> torch.Tensor:
        """Children count of each node (0 for negative 'dead' ids)."""
        safe = nodes.clamp(min=0)
        counts = self.child_ptr[safe + 1] - self.child_ptr[safe]
        return torch.where(nodes >= 0, counts, torch.zeros_like(counts))

    def child(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Node reached from ``nodes`` by ``tokens`` (elementwise); raises if an edge is missing."""
        keys = nodes * self.vocab_span + tokens
        edge = torch.searchsorted(self.edge_key, keys).clamp(max=self.edge_key.numel() - 1)
        in_span = (tokens >= 0) & (tokens < self.vocab_span)  # else the key would alias another node's edge
        if not bool(((self.edge_key[edge] == keys) & in_span).all()):
            raise ValueError("token sequence leaves the title trie")
        return edge + 1

    def path(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Node *before* each token of right-padded sequences [B, R]: path[:, 0] is the root, -1 past the end."""
        batch, width = tokens.shape
        nodes = torch.full((batch, width), -1, dtype=torch.long, device=tokens.device)
        current = torch.zeros(batch, dtype=torch.long, device=tokens.device)
        for k in range(width):
            live = k < lengths
            nodes[:, k] = torch.where(live, current, nodes[:, k])
            if k + 1 < width:
                step = self.child(current[live], tokens[live, k])
                current = current.clone()
                current[live] = step
        return nodes

    def children_padded(self, nodes: torch.Tensor, width: int | None = None):
        """Edges of each node as a padded matrix: (edge ids [N, D], valid mask [N, D])."""
        counts = self.num_children(nodes)
        width = int(counts.max().item()) if width is None else width
        offsets = torch.arange(width, device=nodes.device)
        start = self.child_ptr[nodes.clamp(min=0)]
        valid = offsets < counts.unsqueeze(-1)
        edges = torch.where(valid, start.unsqueeze(-1) + offsets, torch.zeros_like(offsets))
        return edges, valid

    def inner_leaves(self) -> torch.Tensor:
        """Leaf ids whose node also has children: sequences that are a prefix of another. Sequences ending with
        EOS never are; titles ended by another token (the sequence format's comma) could be."""
        nodes = (self.node_leaf >= 0).nonzero().squeeze(1)
        return self.node_leaf[nodes[self.num_children(nodes) > 0]]

    def items_of_leaves(self, leaves: torch.Tensor):
        """Flatten leaf ids [N] into (item ids, index into ``leaves``) pairs."""
        start = self.leaf_item_ptr[leaves]
        counts = self.leaf_item_ptr[leaves + 1] - start
        owner = torch.repeat_interleave(torch.arange(leaves.numel(), device=leaves.device), counts)
        offset = torch.arange(int(counts.sum()), device=leaves.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return self.leaf_items[start[owner] + offset], owner

    def excluded_nodes(self, excluded_items: list[list[int]]) -> torch.Tensor:
        """[U, n_nodes] bool: True at the nodes whose every title belongs only to user u's excluded items.

        A leaf is excluded when all the items spelling its title are; an inner node when all leaves below
        it are, so beam search can prune the whole subtree. A title shared by an excluded and another item
        stays. Costs O(excluded items x depth) per user, plus one pass over the leaves the first time.
        """
        parent = torch.cat([self.edge_key.new_zeros(1), self.edge_key // self.vocab_span])  # [n_nodes], root: 0
        leaf_nodes = (self.node_leaf >= 0).nonzero().squeeze(1)  # leaf l sits at node leaf_nodes[l] (both sorted)
        below = _count_up(parent, leaf_nodes, self.num_nodes)  # [n_nodes] leaves in each subtree
        out = torch.zeros(len(excluded_items), self.num_nodes, dtype=torch.bool, device=self.child_ptr.device)
        for user, items in enumerate(excluded_items):
            items = torch.as_tensor(sorted(set(items)), dtype=torch.long, device=self.child_ptr.device)
            leaves = self.item_leaf[items[(items >= 0) & (items < self.item_leaf.numel())]]
            leaves = torch.unique(leaves[leaves >= 0])
            counts = self.leaf_item_ptr[leaves + 1] - self.leaf_item_ptr[leaves]
            excluded_per_leaf = torch.zeros_like(counts)
            for item in items.tolist():  # how many of each leaf's items are excluded
                if 0 <= item < self.item_leaf.numel() and int(self.item_leaf[item]) >= 0:
                    excluded_per_leaf += (leaves == self.item_leaf[item]).long()
            gone = leaves[excluded_per_leaf == counts]  # leaf ids whose items are all excluded
            out[user] = (_count_up(parent, leaf_nodes[gone], self.num_nodes) == below) & (below > 0)
        return out


def _count_up(parent: torch.Tensor, nodes: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """[n_nodes] how many of ``nodes`` lie in each node's subtree (each node counts itself)."""
    counts = torch.zeros(n_nodes, dtype=torch.long, device=parent.device)
    current = nodes.clone()
    while current.numel():
        counts.index_add_(0, current, torch.ones_like(current))
        current = parent[current[current > 0]]
    return counts

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
    that spell that sequence (several items may share one title).

The build sorts the padded token matrix once and walks it column by column, so
it costs O(T * L log T) time and O(T * L) memory for T titles of length <= L:
nothing is quadratic in the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PAD = -1


def _padded_matrix(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """[T, L] int32 matrix of the sequences, right-padded with PAD, and their lengths."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if len(sequences) == 0 or lengths.min() == 0:
        raise ValueError("every trie sequence needs at least one token")
    flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
    if flat.min() < 0:
        raise ValueError("token ids must be non-negative")
    matrix = np.full((len(sequences), int(lengths.max())), PAD, dtype=np.int32)
    rows = np.repeat(np.arange(len(sequences)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    matrix[rows, cols] = flat
    return matrix, lengths


@dataclass
class TokenTrie:
    child_ptr: torch.Tensor  # [n_nodes + 1] int64
    edge_token: torch.Tensor  # [n_edges] int64
    edge_key: torch.Tensor  # [n_edges] int64: parent * vocab_span + token, sorted
    node_leaf: torch.Tensor  # [n_nodes] int64, -1 for inner nodes
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
        order = np.lexsort(matrix.T[::-1])  # rows sorted lexicographically
        matrix = matrix[order]
        lengths = lengths[order]

        # lcp[i]: first column where sorted row i differs from row i - 1 (width if equal)
        lcp = np.full(n_seq, width, dtype=np.int64)
        lcp[0] = 0
        for col in range(width):
            undecided = lcp[1:] == width
            differs = matrix[1:, col] != matrix[:-1, col]
            lcp[1:][undecided & differs] = col

        parents, tokens = [], []
        node_of_row = np.zeros(n_seq, dtype=np.int64)  # node reached by each row so far
        leaf_node_of_row = np.zeros(n_seq, dtype=np.int64)
        next_id = 1
        for col in range(width):
            alive = matrix[:, col] != PAD
            new = alive & (lcp <= col)
            n_new = int(new.sum())
            ids = np.where(new, next_id + np.cumsum(new) - 1, 0)
            parents.append(node_of_row[new])
            tokens.append(matrix[new, col].astype(np.int64))
            # rows that share the prefix inherit the node opened by the first of them
            node_of_row = np.where(alive, np.maximum.accumulate(ids), node_of_row)
            ends = lengths == col + 1
            leaf_node_of_row[ends] = node_of_row[ends]
            next_id += n_new

        edge_parent = np.concatenate(parents)
        edge_token = np.concatenate(tokens)
        n_nodes = next_id
        child_ptr = np.searchsorted(edge_parent, np.arange(n_nodes + 1), side="left")
        vocab_span = int(edge_token.max()) + 1
        edge_key = edge_parent * vocab_span + edge_token

        # leaves: identical sequences share one leaf and pool their items
        leaf_nodes, leaf_of_row = np.unique(leaf_node_of_row, return_inverse=True)
        node_leaf = np.full(n_nodes, -1, dtype=np.int64)
        node_leaf[leaf_nodes] = np.arange(len(leaf_nodes))
        item_leaf = np.full(n_items, -1, dtype=np.int64)
        per_leaf: list[list[int]] = [[] for _ in leaf_nodes]
        for row, seq_index in enumerate(order):
            per_leaf[leaf_of_row[row]].extend(items_of_sequence[seq_index])
        counts = np.array([len(x) for x in per_leaf], dtype=np.int64)
        leaf_items = np.array([i for x in per_leaf for i in x], dtype=np.int64)
        if len(leaf_items):
            item_leaf[leaf_items] = np.repeat(np.arange(len(leaf_nodes)), counts)

        as_t = torch.from_numpy
        return cls(
            child_ptr=as_t(child_ptr.astype(np.int64)),
            edge_token=as_t(edge_token),
            edge_key=as_t(edge_key),
            node_leaf=as_t(node_leaf),
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

    def items_of_leaves(self, leaves: torch.Tensor):
        """Flatten leaf ids [N] into (item ids, index into ``leaves``) pairs."""
        start = self.leaf_item_ptr[leaves]
        counts = self.leaf_item_ptr[leaves + 1] - start
        owner = torch.repeat_interleave(torch.arange(leaves.numel(), device=leaves.device), counts)
        offset = torch.arange(int(counts.sum()), device=leaves.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return self.leaf_items[start[owner] + offset], owner

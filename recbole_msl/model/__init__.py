"""Plugin models; each in a file named after its class, lowercased (RecBole's convention)."""

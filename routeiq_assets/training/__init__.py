"""Labels, splits, embeddings and training sets."""

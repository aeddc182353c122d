"""BERT router: fine-tune a small transformer encoder end to end, with a quality head per model.

The default encoder is the packaged all-MiniLM-L6-v2 (a BERT-architecture encoder), loaded
offline. Training runs on the GPU when there is one. Saved as the encoder folder
(safetensors + tokenizer files, via sentence-transformers) plus the head in the npz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routeiq_assets.routers.base import Router
from routeiq_assets.routers.torch_training import pick_device

ENCODER_DIR = "encoder"


class BertRouter(Router):
    router_type = "bert"
    input_kind = "text"

    def __init__(
        self,
        base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
        epochs: int = 1,
        lr: float = 3e-5,
        head_lr: float = 1e-3,
        batch_size: int = 32,
        max_seq_length: int = 64,
        max_train_queries: int | None = None,
        seed: int = 42,
        device: str = "auto",
    ):
        self.base_model, self.epochs, self.lr, self.head_lr = base_model, epochs, lr, head_lr
        self.batch_size, self.max_seq_length, self.seed, self.device = (
            batch_size,
            max_seq_length,
            seed,
            device,
        )
        self.max_train_queries = max_train_queries

    def _encoder(self, path: str):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = self.max_seq_length
        return model

    def fit(self, texts, quality, mask, model_names, cost, progress=None):
        import torch

        from routeiq_assets.training.embeddings import resolve_model_path

        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        if self.max_train_queries and len(texts) > self.max_train_queries:
            # a CPU budget: a deterministic sample of queries, all their observed pairs kept
            keep = np.sort(
                np.random.default_rng(self.seed).choice(
                    len(texts), self.max_train_queries, replace=False
                )
            )
            texts = [texts[i] for i in keep]
            quality, mask = np.asarray(quality)[keep], np.asarray(mask)[keep]
            if progress:
                progress(f"training on a sample of {len(keep)} queries (max_train_queries)")
        dev = torch.device(pick_device(self.device))
        encoder = self._encoder(resolve_model_path(self.base_model)).to(dev)
        dim = encoder.get_sentence_embedding_dimension()
        head = torch.nn.Linear(dim, len(model_names)).to(dev)
        optimiser = torch.optim.AdamW(
            [
                {"params": encoder.parameters(), "lr": self.lr},
                {"params": head.parameters(), "lr": self.head_lr},
            ]
        )
        y = torch.as_tensor(quality, dtype=torch.float32)
        m = torch.as_tensor(mask, dtype=torch.float32)
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        use_amp = dev.type == "cuda"
        self.losses_ = []
        for epoch in range(self.epochs):
            encoder.train()
            order = torch.randperm(len(texts), generator=generator)
            total, weight = 0.0, 0.0
            for step, start in enumerate(range(0, len(texts), self.batch_size)):
                idx = order[start : start + self.batch_size]
                features = encoder.tokenize([texts[i] for i in idx.tolist()])
                features = {k: v.to(dev) if hasattr(v, "to") else v for k, v in features.items()}
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    emb = encoder(features)["sentence_embedding"]
                    logits = head(emb).float()
                mb, yb = m[idx].to(dev), y[idx].to(dev)
                observed = mb.sum()
                if observed == 0:
                    continue
                loss = (loss_fn(logits, yb) * mb).sum() / observed
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, weight = (
                    total + float(loss.detach()) * float(observed),
                    weight + float(observed),
                )
                if progress and step % 20 == 0:
                    progress(
                        f"epoch {epoch + 1}/{self.epochs} step {step}: {float(loss.detach()):.4f}"
                    )
            self.losses_.append(total / max(weight, 1.0))
        encoder.eval()
        self.encoder_ = encoder.to("cpu")
        self.head_w_ = head.weight.detach().cpu().numpy().T.copy()
        self.head_b_ = head.bias.detach().cpu().numpy().copy()
        self.model_names_, self.cost_ = list(model_names), np.asarray(cost, np.float64)
        return self

    def predict_quality(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        emb = self.encoder_.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return 1.0 / (1.0 + np.exp(-(emb @ self.head_w_ + self.head_b_)))

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "epochs": self.epochs,
            "lr": self.lr,
            "head_lr": self.head_lr,
            "batch_size": self.batch_size,
            "max_seq_length": self.max_seq_length,
            "max_train_queries": self.max_train_queries,
            "seed": self.seed,
            "device": self.device,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {"head_w": self.head_w_, "head_b": self.head_b_}

    def save_extra(self, folder: Path) -> None:
        self.encoder_.save(str(Path(folder) / ENCODER_DIR), safe_serialization=True)

    def load_extra(self, folder: Path) -> None:
        self.encoder_ = self._encoder(str(Path(folder) / ENCODER_DIR))

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        router.head_w_, router.head_b_ = arrays["head_w"], arrays["head_b"]
        return router

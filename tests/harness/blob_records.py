"""Learnable synthetic records, as `MammographyDataset` yields them: malignant images carry a bright blob."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class BlobRecords(Dataset):
    """`count` records of `height` x `width` Gaussian noise (scale `noise`); every second one is malignant and carries
    a blob of `contrast` (a sixth of the height by a third of the width). Calcification is labelled (as the
    malignancy) on every `calcification_every`-th record only, and missing on the others (0: on none)."""

    def __init__(
        self,
        count: int,
        height: int,
        width: int,
        seed: int = 0,
        contrast: float = 1.5,
        noise: float = 0.5,
        calcification_every: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for index in range(count):
            malignant = float(index % 2)
            image = torch.randn(1, height, width, generator=generator) * noise
            if malignant:
                top, left = height // 3, width // 4
                image[:, top : top + height // 6, left : left + width // 3] += contrast
            labelled = calcification_every > 0 and index % calcification_every == 0
            self.items.append(
                {
                    "image": image,
                    "metadata": {
                        "age": 40.0 + index % 40,
                        "view": ("CC", "MLO")[index % 2],
                        "laterality": "LR"[index % 3 % 2],
                        "implant": 0.0,
                        "density": "ABCD"[index % 4],
                        "manufacturer": "Hologic",
                        "machine_id": str(index % 5),
                    },
                    "labels": torch.tensor([malignant, malignant if labelled else float("nan")]),
                    "image_id": f"{seed}-rec-{index}",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

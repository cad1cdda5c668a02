"""Tiny PyTorch data sets for the trainer tests."""
import torch


class ColourSet(torch.utils.data.Dataset):
    """Easy data: class 0 is a dark, class 1 a bright constant image; top/bottom label map."""

    classes = ["dark", "bright"]
    labels = [("sky", (0, 0, 255)), ("ground", (0, 255, 0))]

    def __init__(self, n=32, size=16, channels=3):
        self.n, self.size, self.channels = n, size, channels

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        c = i % 2
        lab = torch.zeros(self.size, self.size, dtype=torch.int64)
        lab[self.size // 2:] = 1
        img = torch.full((self.channels, self.size, self.size), -0.6 if c == 0 else 0.6)
        return {"image": img, "class": c, "caption": "bright" if c else "dark", "labels": lab}

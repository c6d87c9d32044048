"""Which input size each row of a notebook runs at, for the images it is given.

A tier's resolution is chosen for the course's own data: the quick tier's 64 px suits Fashion-MNIST's 28 px
images on a CPU. A folder of photos a user brings is another matter: pretrained features of a 224 px photo shrunk
to 64 px lose much of what the weights learnt to see. So when the images are larger than the tier's size and no
resolution was asked for,

- rows that read *frozen* features (a head on cached features) run at the weights' own resolution: the backbone
  runs once per image and the features are cached, so the size costs seconds, not minutes;
- rows that train *through* the network run at the largest size in `LADDER` whose pixels fit the tier's budget
  (training images x pixels per image, the cost of the tier's own default run), never below the tier's size and
  never above the images' own size or the weights'.

`fit_resolutions` returns both sizes and a sentence saying why; a notebook prints it and runs each row at
`Resolutions.of(strategy)`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LADDER", "Resolutions", "fit_resolutions", "native_px", "majority_floor_note"]

LADDER = (64, 96, 112, 128, 160, 192, 224, 256, 288, 320, 384)  # the sizes a network row may be given


@dataclass(frozen=True)
class Resolutions:
    """The input size of frozen-feature rows and of rows that train through the network, and why."""

    features: int
    network: int
    native: int  # the images' own short side (px)
    reason: str

    @property
    def differ(self) -> bool:
        return self.features != self.network

    def of(self, strategy) -> int:
        """The size `strategy` runs at: frozen-feature rows (no epochs through the network) get `features`."""
        return self.features if not getattr(strategy, "num_epochs", 0) else self.network


def native_px(ds) -> int:
    """The short side of a data set's images as they came (a folder's files, before labkit resized them)."""
    source = getattr(ds, "source_px", None)
    if source:
        return int(source)
    images = ds.images
    return int(min(images.shape[1], images.shape[2]))


def fit_resolutions(train_ds, *, tier_px: int, weights_px: int, requested: int | None = None,
                    pixel_budget: int | None = None, n_train: int | None = None) -> Resolutions:
    """The sizes a notebook's rows run at on `train_ds` (see the module's text).

    tier_px: the tier's default resolution; weights_px: the resolution the pretrained weights were trained at;
    requested: a resolution the user asked for (then every row runs at it); pixel_budget: training images x pixels
    per image the network rows may cost (None: no limit); n_train: the training images a network row sees
    (None: all of `train_ds`).
    """
    native = native_px(train_ds)
    if requested is not None:
        return Resolutions(int(requested), int(requested), native, f"every row at {requested} px, as asked")
    if native <= tier_px:
        return Resolutions(tier_px, tier_px, native,
                           f"every row at the tier's {tier_px} px (the images are {native} px)")
    n = int(n_train if n_train is not None else len(train_ds))
    ceiling = max(tier_px, min(native, weights_px))
    fits = [px for px in LADDER if tier_px <= px <= ceiling and (pixel_budget is None or n * px * px <= pixel_budget)]
    network = max(fits, default=tier_px)
    budget = "" if pixel_budget is None else (f", the largest size at which {n} training images fit the tier's time "
                                              f"({pixel_budget / tier_px ** 2:.0f} images at {tier_px} px)")
    return Resolutions(
        weights_px, network, native,
        f"the images are {native} px: frozen-feature rows at the weights' {weights_px} px (features are cached, so "
        f"the size costs seconds); rows that train through the network at {network} px{budget}")


def majority_floor_note(name: str, acc: float, labels, n_steps: int | None = None) -> str:
    """A sentence when `acc` does not clear the majority-class floor of a test set with these labels; "" else.

    Cleared means the 95 % interval of the accuracy (normal approximation over the test items) lies above the share
    of the largest class: a model that always answers that class would score it.
    """
    import numpy as np

    labels = np.asarray(labels)
    if labels.size == 0:
        return ""
    share = float(np.bincount(labels).max() / labels.size)
    half = 1.96 * float(np.sqrt(max(acc * (1 - acc), 1e-12) / labels.size))
    if acc - half > share:
        return ""
    steps = f" in {n_steps} optimizer steps" if n_steps else ""
    return (f"{name} did not leave the majority-class floor: {acc:.3f} against {share:.3f}, the share of the test "
            f"set's largest class; it learnt nothing usable{steps}, so comparisons with it measure that budget, "
            f"not what {name} can reach with more training")

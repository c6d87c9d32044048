"""Sources: every text the course cites, in one registry, and the setting each claim is tested at.

A claim names its source as a *reference*: a registered key, optionally followed by the section it comes from,
``"tle §From ImageNet to Chest X-Rays: A Concrete Walkthrough"`` or ``"yosinski2014 §Random Weights"``.
`resolve` turns a reference into (Source, section) and refuses a key nobody registered; `cite` gives the form a
student reads, *Title (author, year), §Section*. Two keys are not external texts: ``course`` (a claim the course
makes and measures itself, e.g. a control, or its own test of a paper's method) and ``mechanism`` (how a layer or
an architecture works, shown rather than judged). Claims are stated in the course's own words; nothing here
quotes a source.

`SETTINGS` says, per claim id (or id pattern, for ids made in a loop such as ``lr-step-*``), the setting the
course tests the claim at and how it differs from the source's; `setting_for` looks one up.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Mapping

__all__ = ["Source", "SOURCES", "OWN", "KINDS", "SETTINGS", "CLAIM_SOURCES", "resolve", "cite", "setting_for",
           "for_claim"]

KINDS = ("article", "paper", "guide", "course", "mechanism")


@dataclass(frozen=True)
class Source:
    """One cited text: a short key, its title, who wrote it (people or site), its year and what kind it is."""

    key: str
    title: str
    author: str
    year: int | None
    kind: str  # one of KINDS
    note: str = ""  # what the course uses it for (no URL: the title is the citation)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Source {self.key!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}.")


_ALL = [
    # the three articles the course teaches from
    Source("tle", "Transfer Learning Explained: Standing on the Shoulders of Pretrained Models", "Abstract Algorithms",
           None, "article", "the 500-image chest X-ray story, the strategy table, the memory figure, the 2x2 matrix, "
           "the DistilBERT/IMDB recipe, forgetting and pitfalls"),
    Source("asktodo", "Transfer Learning with Pre-Trained Models: How to Build AI Systems 10x Faster Without "
           "Massive Datasets", "asktodo.ai", 2026, "guide", "the 5-step pipeline, lower LRs and early stopping "
           "against forgetting, negative transfer vs scratch, raw pixels vs normalised input"),
    Source("cw", "Transfer Learning — Pre-trained Models Complete Guide", "CW online lesson", None, "guide",
           "the decision framework by data size and domain, forgetting's causes and mitigations"),
    # papers and other guides
    Source("yosinski2014", "How transferable are features in deep neural networks?", "Yosinski et al.", 2014,
           "paper", "features go from general to specific with depth; random frozen layers"),
    Source("zeiler2014", "Visualizing and Understanding Convolutional Networks", "Zeiler & Fergus", 2014, "paper",
           "filter visualisation; linear classifiers on each layer's features"),
    Source("kirkpatrick2017", "Overcoming catastrophic forgetting in neural networks", "Kirkpatrick et al.", 2017,
           "paper", "elastic weight consolidation (EWC)"),
    Source("li2018", "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
           "Li, Grandvalet & Davoine", 2018, "paper", "L2-SP; its measured claim is target-task accuracy"),
    Source("rolnick2019", "Experience Replay for Continual Learning", "Rolnick et al.", 2019, "paper",
           "replay in continual reinforcement learning"),
    Source("lihoiem2017", "Learning without Forgetting", "Li & Hoiem", 2017, "paper",
           "distillation on new-task data to keep the old task"),
    Source("kumar2022", "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution",
           "Kumar et al.", 2022, "paper", "LP-FT; its measured claims are OOD accuracy and feature distortion"),
    Source("keras-guide", "Transfer learning & fine-tuning", "Chollet, Keras developer guides", 2020, "guide",
           "keep BatchNorm in inference mode when fine-tuning"),
    Source("howard2018", "Universal Language Model Fine-tuning for Text Classification", "Howard & Ruder", 2018,
           "paper", "ULMFiT: discriminative fine-tuning and gradual unfreezing"),
    Source("hu2021", "LoRA: Low-Rank Adaptation of Large Language Models", "Hu et al.", 2021, "paper",
           "low-rank adapters"),
    Source("cs231n", "CS231n Convolutional Neural Networks for Visual Recognition: Transfer Learning",
           "Stanford CS231n course notes", None, "course", "small + very different data: a classifier on "
           "earlier-layer features"),
    # not external texts
    Source("course", "Course claim", "labkit", None, "course",
           "the course's own claim: a control, a reference row, or its own test of a cited method"),
    Source("mechanism", "How the layer or architecture works", "labkit", None, "mechanism",
           "a fact of the architecture or of a layer's definition, shown rather than judged"),
]
SOURCES: dict[str, Source] = {s.key: s for s in _ALL}
OWN = frozenset({"course", "mechanism"})  # keys that are not external texts (no reproduction report)


def resolve(ref: str) -> tuple[Source, str]:
    """(Source, section) of a reference "key" or "key §Section name"; an unknown key is a ValueError."""
    key, _, section = str(ref).partition("§")
    key = key.strip()
    if key not in SOURCES:
        raise ValueError(f"The source {key!r} (in {ref!r}) is not registered in labkit.sources; a claim's source "
                         f"must be one of: {', '.join(sorted(SOURCES))}.")
    return SOURCES[key], section.strip()


def cite(ref: str) -> str:
    """The display form of a reference: "Title (author, year), §Section" (no year when the source has none)."""
    source, section = resolve(ref)
    who = source.author if source.year is None else f"{source.author}, {source.year}"
    return f"{source.title} ({who})" + (f", §{section}" if section else "")


def setting_for(claim_id: str, settings: Mapping[str, str] | None = None) -> str:
    """The setting a claim is tested at: an exact id first, else the first matching pattern; "" when none."""
    table = SETTINGS if settings is None else settings
    if claim_id in table:
        return table[claim_id]
    return next((text for pattern, text in table.items() if fnmatchcase(claim_id, pattern)), "")


# claim id (or fnmatch pattern) -> the setting the course tests it at, and how that differs from the source's
SETTINGS: dict[str, str] = {
    "cat-in-top5": ("Three sample photos through EfficientNet-Lite0, shown and not judged; no source gives a number "
        "for it."),
    "pretrained-beats-random": ("Linear probe on EfficientNet-Lite0's last pooled features, Fashion-MNIST, 50 images "
        "per class, 112 px; Yosinski et al. froze random lower layers of an AlexNet-style net and retrained the "
        "layers above on half of ImageNet."),
    "pretrained-beats-pixels": ("Linear probes on Lite0 features vs on raw pixels, Fashion-MNIST, 50 images per class; "
        "the course's own reference row."),
    "filters-structured": ("Lite0's stem filters scored by neighbour correlation against a random init, shown not "
        "judged; Zeiler and Fergus visualised a trained AlexNet-style net's filters and activations."),
    "receptive-fields-grow": ("Computed from Lite0's layer strides and kernel sizes at 112 px; a fact of the "
        "architecture, not a test."),
    "early-generic": ("Linear probes on Lite0's stem features, pretrained vs random init, Fashion-MNIST at 112 px; no "
        "source runs this test: Yosinski et al. retrain the layers above a frozen cut, they do not probe random "
        "stems."),
    "deeper-more-useful": ("Linear probe per depth of ImageNet Lite0 on Fashion-MNIST; Zeiler and Fergus trained "
        "linear classifiers on each layer of their ImageNet net for Caltech-101/256."),
    "gap-grows": ("Difference of two paired gaps (pretrained minus random) from Lite0 linear probes on Fashion-MNIST; "
        "Yosinski et al. measured random frozen layers under retrained upper layers on ImageNet halves."),
    "peaks-before-last-*": ("Lite0 probes at the last two stages on Fashion-MNIST and on digits; Yosinski et al. "
        "transferred between man-made and natural halves of ImageNet with retrained upper layers."),
    "cut-depends-on-task": ("Best probe depth on Fashion-MNIST vs digits, picked on the test set and so shown, not "
        "judged."),
    "fe-beats-scratch": ("Lite0 on Fashion-MNIST, 50 images per class at 64 px, scratch with its own validation-chosen "
        "LR; the article's case is ResNet-50 on 500 chest X-rays at 224 px."),
    "head-3-epochs": ("Head on cached Lite0 features, 3 epochs vs the validation-chosen epoch, Fashion-MNIST 50 per "
        "class, all 10,000 test images; the article reports a loss curve on chest X-rays, not an accuracy gap."),
    "two-stage-beats-fe": ("Lite0, Fashion-MNIST 50 per class, 64 px, a few epochs at equal step budgets; the article "
        "fine-tunes ResNet-50 for 10 more epochs on chest X-rays."),
    "full-ft-below-two-stage": ("Lite0 on Fashion-MNIST 50 per class at the article's loop: augmentation and BatchNorm "
        "in training mode in both stages, two-stage 5 head epochs through the network + 10 at 1e-4..1e-5, full "
        "fine-tuning at 1e-4 for 5 epochs; the article's run is ResNet-50 on 500 chest X-rays."),
    "article-ft-bn-cost": ("Lite0 on Fashion-MNIST 50 per class, the article's full fine-tuning loop (1e-4, 5 epochs, "
        "augmentation) with BatchNorm trained vs frozen; the article reports only the 74 % and does not name a cause."),
    "sensible-lr-fine": ("Lite0 on Fashion-MNIST 50 per class, full fine-tuning at the validation-best LR of a small "
        "sweep."),
    "bn-frozen-imagenet": ("Lite0 two-stage fine-tuning on Fashion-MNIST 50 per class, BatchNorm frozen vs trained; "
        "the Keras guide gives the advice without measuring it, so the measured gap is the course's."),
    "augmentation-helps": ("Lite0 two-stage on Fashion-MNIST 50 per class with the article's augmentation; the article "
        "names heavy augmentation as the remedy for a head overfitting 500 images and gives no number."),
    "memory-4x": ("Random-init ResNet-50 (the article's network) measured on the meta device: the tensors of one "
        "training step, full vs frozen, at batch 1-64 and 112-224 px; the article's figure is a GPU reading at batch "
        "32, 224 px, which also holds the CUDA context."),
    "quick-resolution": ("Lite0 feature extraction at 64 px vs 112 px on Fashion-MNIST 50 per class, all 10,000 test "
        "images; a check of the kit's own warning."),
    "matrix-similar-is-closer": ("Linear probes on frozen small-CNN features (source: Fashion-MNIST 0-4) against a "
        "random init of the same network, on Fashion-MNIST 5-9 as they are and with permuted pixels, 10 per class; "
        "the course's check that the matrix's similarity axis is real."),
    "matrix-small-similar": ("Small CNN pretrained on Fashion-MNIST 0-4, target classes 5-9 at 10 per class, 28 px, "
        "choices on validation; both guides argue from an ImageNet backbone and give no sizes for their quadrants."),
    "matrix-large-similar": ("Small CNN pretrained on Fashion-MNIST 0-4, target classes 5-9 at 200 per class (1,000 "
        "images; 1,200 per class on the full tier), discriminative LRs 10x lower at the bottom; the guides' backbone "
        "is an ImageNet network."),
    "matrix-small-different": ("Small CNN pretrained on Fashion-MNIST 0-4, target classes 5-9 with permuted pixels at "
        "10 per class, the top half fine-tuned; the guides' example is ImageNet to satellite or medical images."),
    "matrix-large-different": ("Small CNN pretrained on Fashion-MNIST 0-4, permuted-pixel target at 200 per class; "
        "the guides' quadrant is an ImageNet backbone on e.g. satellite imagery."),
    "ft-overtakes-with-labels": ("Lite0 on Fashion-MNIST, partial fine-tuning minus feature extraction at the most "
        "labels tried against the fewest (an interaction over the label curve); the lesson states the thresholds for "
        "vision tasks in general without an experiment."),
    "bn-statistics-alone": ("Small CNN pretrained on Fashion-MNIST 0-4, run in train mode at lr 0 on classes 5-9; the "
        "course's own control."),
    "lr-step-*": ("Small CNN pretrained on Fashion-MNIST 0-4, fine-tuned on classes 5-9 for 2 epochs per LR, task A "
        "read through the old head; the article speaks of broadly useful pretrained representations, not an old "
        "task's head."),
    "old-head-no-longer-fits": ("Small CNN fine-tuned on Fashion-MNIST 5-9 at the LR task-B validation picks; refitted "
        "linear probe vs the "
        "kept task-A head."),
    "features-lose-task-a": ("Refitted task-A probe before vs after fine-tuning the small CNN at the LR task-B "
        "validation picks."),
    "epochs-*-*": ("Small CNN pretrained on Fashion-MNIST 0-4, read after 1, 2 and 4 epochs on classes 5-9 at lr 3e-4; "
        "the lesson lists too many epochs as a cause of forgetting in pretrained models generally."),
    "freeze-depth-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, knob as strong as task-B validation allows; the article argues for freezing to protect an "
        "ImageNet backbone and does "
        "not measure an old task."),
    "early-stop-lower-lr-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, "
        "knob set as strongly as task-B validation allows (early stopping at LR x 1 or lower); the guide gives the "
        "advice for pretrained models without an experiment."),
    "plain-l2-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, knob as strong as task-B validation allows; the lesson lists L2/weight decay as a "
        "mitigation without measuring it."),
    "l2-sp-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B validation "
        "picks, "
        "knob set as strongly as task-B validation allows; Li et al. report target-task accuracy on "
        "ImageNet/Places backbones, not retention of the source."),
    "ewc-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B validation picks, "
        "knob set as strongly as task-B validation allows; Kirkpatrick et al. trained an MLP on a sequence of"
        " permuted-MNIST tasks."),
    "replay-k-*-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, knob as strong as task-B validation allows (100 stored task-A images); the lesson mixes "
        "pre-training data in, "
        "without an experiment."),
    "lwf-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B validation picks, "
        "knob set as strongly as task-B validation allows; Li and Hoiem extended ImageNet/Places networks to "
        "new vision datasets."),
    "lp-ft-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B validation "
        "picks, "
        "probe LR chosen on task-B validation; Kumar et al. measure out-of-distribution accuracy "
        "and feature distortion, not an old task."),
    "gradual-unfreezing-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, one depth unfrozen per epoch over 4 epochs (plain fine-tuning: 2), LR decay per depth as "
        "strong as task-B validation allows; the article names the fix for ImageNet networks without an experiment."),
    "discriminative-lrs-keeps-a": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B "
        "validation picks, each earlier depth at decay x the next one's LR, decay as strong as task-B validation "
        "allows; the article names the fix for ImageNet networks without an experiment."),
    "plain-l2-learns-b": ("Small CNN on Fashion-MNIST 5-9, plain L2 at its validation-chosen alpha vs the untrained "
        "task-B head."),
    "l2sp-beats-l2": ("Fashion-MNIST classes 0-4 small CNN fine-tuned on classes 5-9 at the LR task-B validation "
        "picks, "
        "knob set as strongly as task-B validation allows for both penalties; Li et al. compare the two on "
        "target-task accuracy only."),
    "ewc-tiny-lambda-nothing": ("Small CNN at the LR task-B validation picks with EWC lambda 0.01 vs plain "
        "fine-tuning; a control the paper "
        "does not run."),
    "lite0-high-lr-costs-features": ("Lite0 fine-tuned on Fashion-MNIST at lr 1e-2 vs 1e-3, then probed on digits at "
        "64 px; the article describes the effect without an experiment."),
    "broken-runs-flagged": "The notebook's own bookkeeping, shown not judged.",
    "frozen-beats-majority": "MiniLM embeddings on four 20 Newsgroups computer groups, every test text.",
    "frozen-near-tfidf": "MiniLM embeddings vs TF-IDF on four 20 Newsgroups computer groups, every test text.",
    "ft-beats-frozen": ("MiniLM (22.7 M parameters), Trainer recipe at the rate chosen on 200 validation texts from "
        "2e-5, 5e-5 and 1e-4, four 20 Newsgroups groups, 64 texts per class; the article's 3-8 points are for BERT on "
        "GLUE tasks."),
    "ft-beats-frozen-long": ("MiniLM fine-tuned at the quick tier's 48 tokens vs frozen MiniLM embeddings of the "
        "same texts at 128 tokens, four 20 Newsgroups groups, 64 texts per class: the article compares no token "
        "budgets."),
    "ft-2e5-beats-frozen": ("MiniLM at the article's lr 2e-5 for 3 epochs (96 steps of 8 texts), four 20 Newsgroups "
        "groups, 64 texts per class; the article's 3-8 points are for BERT on GLUE tasks."),
    "2e5-learns-task": ("MiniLM at lr 2e-5 vs the rate chosen on validation, 20 Newsgroups, 64 texts per class: the "
        "precondition under which 2e5-keeps-encoder means something."),
    "mean-head-not-worse": ("MiniLM Trainer recipe at the rate chosen on validation with either head, 20 Newsgroups, "
        "64 texts per class."),
    "llrd-helps": ("MiniLM, the Trainer recipe at base LR 1e-4 with x0.7 per layer vs one LR, 20 Newsgroups; ULMFiT "
        "applied it to "
        "fine-tuning an AWD-LSTM language model (factor 1/2.6)."),
    "lora-keeps-more-at-matched-accuracy": ("kNN on every held-out 20 Newsgroups test text, LoRA's MiniLM encoder vs "
        "the full fine-tune nearest its validation accuracy; a control the LoRA paper does not run."),
    "2e5-keeps-encoder": ("kNN on held-out 20 Newsgroups topics with MiniLM before vs after fine-tuning; the article "
        "speaks of BERT-style models' attention patterns."),
    "1e3-corrupts-encoder": ("MiniLM fine-tuned on four 20 Newsgroups groups, kNN on held-out topics; the article "
        "gives no size for the damage."),
    "1e3-costs-this-task": ("MiniLM on four 20 Newsgroups groups, 64 texts per class, 1,000 test texts; lr 1e-3 "
        "against the rate chosen on validation."),
    "lora-share": ("Rank-8 LoRA on MiniLM, a count set by the rank, not measured; the paper's counts are for GPT-3 and "
        "RoBERTa."),
    "lora-close-to-ft": ("Rank-8 LoRA at lr 1e-3 vs full fine-tuning at the rate chosen on validation, MiniLM on 20 "
        "Newsgroups; the paper "
        "reports parity on GLUE and generation tasks with far larger models."),
    "distilbert-imdb-93": ("Only measured on the full tier (DistilBERT on IMDB, 2,000 texts per class); the article "
        "trains on all 25k reviews."),
    "few-shot-frozen-wins": ("MiniLM, 16 texts per class (64 in all) on four 20 Newsgroups groups; the lesson's "
        "threshold is stated for pretrained models in general."),
    "frozen-raw-breaks": ("Lite0 on Fashion-MNIST at 64 px, 15 images per class; the guide warns about raw pixels in "
        "general, without a number."),
    "frozen-raw-breaks-plain": ("Lite0 on Fashion-MNIST at 64 px, probe without feature scaling; the guide gives no "
        "number."),
    "probe-standardising-hides": ("Difference of the raw-pixel costs of a plain and a standardised probe on Lite0 "
        "features."),
    "raw-costs": ("Full Lite0 fine-tune on Fashion-MNIST at 64 px, 10 images per class, 100 optimizer steps of 5 "
        "images, each preprocessing's lr chosen from 3e-4, 1e-3 and 3e-3 on 100 held-out training images, 1,000 test "
        "images; the guide gives no number."),
    "no-norm-costs": ("The same fine-tunes (100 steps, lr chosen per preprocessing on validation); the article's own "
        "example is normalising with the dataset's statistics, and it speaks of frozen layers."),
    "twice-costs": ("The same fine-tunes (100 steps, lr chosen per preprocessing on validation); a double "
        "normalisation is one way to break the article's match-the-preprocessing rule."),
    "probe-less-sensitive": ("Paired costs of the double normalisation for a Lite0 fine-tune (100 steps, its own lr "
        "chosen on validation) and a Lite0 probe, on the same 1,000 test images."),
    "dropout-flips": "An MLP head on Lite0 features called twice without eval(), shown not judged.",
    "bn-batch-of-one": ("Small CNN on Fashion-MNIST 0-4, 200 test images at batch 1 in train mode vs eval mode; the "
        "article states the pitfall without a number and the batch of one is the worst case."),
    "frozen-bn-drift": "Small CNN on Fashion-MNIST 0-4 with only a new head trained for 3 epochs on classes 5-9.",
    "negative-transfer-frozen": ("Small CNN pretrained on pixel-scrambled Fashion-MNIST 0-4, probed on classes 5-9 at "
        "5 per class, 10 draws of the training images, 2,000 test images; the guide compares against training from "
        "scratch in general terms."),
    "negative-transfer-mismatch-frozen": ("Frozen probes of the scrambled and the matching source (the same small CNN, "
        "classes 0-4 and training; only the pixel order differs) on classes 5-9 at 5 per class, 10 draws; the "
        "article's example of a distant source is natural photos used for multispectral satellite images."),
    "negative-transfer-narrow-source": ("Frozen probes of the small CNN pretrained on normal Fashion-MNIST 0-4 vs its "
        "random initialisation, classes 5-9 at 5 per class, 10 draws: the control that separates a narrow source "
        "from a mismatched one."),
    "negative-transfer-gap-closes": ("Frozen probes of the scrambled source vs random features at 5 and 50 per class, "
        "10 draws each; the article places negative transfer in its small-data, different-domain quadrant."),
    "negative-transfer-finetuned": ("Scrambled-source small CNN vs random init, 5 per class, 200 steps each, LR chosen "
        "on validation."),
    "matching-source-helps": ("Small CNN pretrained on normal Fashion-MNIST 0-4 vs random init, 5 per class on classes "
        "5-9, equal budgets."),
    "peeking-inflates": ("MLP heads on Lite0 features, 60 (lr, epoch) candidates; a maximum cannot be below the honest "
        "pick, so shown."),
    "duplicates-inflate": ("50 planted copies in the test split, 1-NN and a linear probe on Lite0 features, shown not "
        "judged."),
}


# Every claim's source, by claim id (or id pattern, for ids made in a loop): one place, read by labkit.claims
CLAIM_SOURCES: dict[str, str] = {
    'cat-in-top5': 'course §a look at three photos',
    'pretrained-beats-random': 'yosinski2014 §Random Weights',
    'pretrained-beats-pixels': 'course §raw pixels are the reference row',
    'filters-structured': 'zeiler2014 §Convnet Visualization',
    'receptive-fields-grow': 'mechanism §receptive fields',
    'early-generic': "course §feature hierarchy (motivated by Yosinski's generic-to-specific framing)",
    'deeper-more-useful': 'zeiler2014 §Feature Analysis',
    'gap-grows': 'yosinski2014 §Random Weights',
    'peaks-before-last-*': 'yosinski2014 §Dissimilar Datasets',
    'cut-depends-on-task': 'yosinski2014 §Dissimilar Datasets',
    'fe-beats-scratch': 'tle §From ImageNet to Chest X-Rays: A Concrete Walkthrough',
    'head-3-epochs': 'tle §From ImageNet to Chest X-Rays: A Concrete Walkthrough',
    'two-stage-beats-fe': 'tle §From ImageNet to Chest X-Rays: A Concrete Walkthrough',
    'full-ft-below-two-stage': 'tle §From ImageNet to Chest X-Rays: A Concrete Walkthrough',
    'article-ft-bn-cost': "course §the article's 74 % row at its own settings",
    'sensible-lr-fine': "course §the article's counterpoint",
    'bn-frozen-imagenet': 'keras-guide §Fine-tuning (the note on BatchNormalization)',
    'augmentation-helps': 'tle §Scenario-to-Strategy Decision Guide',
    'memory-4x': 'tle §Inside the Pretrained Network: What Gets Transferred and Why It Sticks (Performance Analysis)',
    'quick-resolution': "course §labkit.guards.check_resolution's warning",
    'matrix-similar-is-closer': 'course §the 2x2 matrix measures its similarity axis',
    'matrix-small-similar': 'tle §The 2×2 Decision Matrix: Dataset Size Meets Domain Similarity',
    'matrix-large-similar': 'tle §The 2×2 Decision Matrix: Dataset Size Meets Domain Similarity',
    'matrix-small-different': 'tle §The 2×2 Decision Matrix: Dataset Size Meets Domain Similarity',
    'matrix-large-different': 'tle §The 2×2 Decision Matrix: Dataset Size Meets Domain Similarity',
    'ft-overtakes-with-labels': 'cw §When to Use Transfer Learning',
    'bn-statistics-alone': 'course §BatchNorm statistics drift',
    'lr-step-*': 'tle §Negative Transfer, Catastrophic Forgetting, and When to Walk Away',
    'old-head-no-longer-fits': 'course §forgetting, read two ways',
    'features-lose-task-a': 'course §forgetting, read two ways',
    'epochs-*-*': 'cw §Catastrophic Forgetting',
    'freeze-depth-keeps-a': 'tle §Lessons Learned: What Practitioners Get Wrong the First Time',
    'early-stop-lower-lr-keeps-a': 'asktodo §Step 5: Monitor for Catastrophic Forgetting',
    'plain-l2-keeps-a': 'cw §Catastrophic Forgetting',
    'l2-sp-keeps-a': 'course §method from L2-SP (Li et al., 2018)',
    'ewc-keeps-a': 'kirkpatrick2017 §EWC allows continual learning in a supervised learning context',
    'replay-k-*-keeps-a': 'cw §Catastrophic Forgetting',
    'lwf-keeps-a': 'lihoiem2017 §Experiments',
    'lp-ft-keeps-a': 'course §method from LP-FT (Kumar et al., 2022)',
    'gradual-unfreezing-keeps-a': 'tle §Negative Transfer, Catastrophic Forgetting, and When to Walk Away',
    'discriminative-lrs-keeps-a': 'tle §Negative Transfer, Catastrophic Forgetting, and When to Walk Away',
    'plain-l2-learns-b': 'course §a working comparator',
    'l2sp-beats-l2': 'course §method from L2-SP (Li et al., 2018)',
    'ewc-tiny-lambda-nothing': 'course §control: EWC (Kirkpatrick et al., 2017) at a useless strength',
    'lite0-high-lr-costs-features': 'tle §Negative Transfer, Catastrophic Forgetting, and When to Walk Away',
    'broken-runs-flagged': 'course §diverged runs',
    'frozen-beats-majority': 'course §a control',
    'frozen-near-tfidf': 'course §the reference row',
    'ft-beats-frozen': 'tle §Transfer Learning in NLP: How BERT and GPT Changed the Playbook',
    'ft-beats-frozen-long': 'course §what each row can afford to read',
    'ft-2e5-beats-frozen': 'tle §Transfer Learning in NLP: How BERT and GPT Changed the Playbook',
    '2e5-learns-task': 'course §a precondition for 2e5-keeps-encoder',
    'mean-head-not-worse': 'course §pooling: a fair comparison',
    'llrd-helps': 'howard2018 §Discriminative fine-tuning',
    '2e5-keeps-encoder': 'tle §HuggingFace Transformers: Transfer Learning Made Practical',
    '1e3-corrupts-encoder': 'tle §HuggingFace Transformers: Transfer Learning Made Practical',
    '1e3-costs-this-task': 'tle §HuggingFace Transformers: Transfer Learning Made Practical',
    'lora-share': 'hu2021 §Our Method',
    'lora-close-to-ft': 'hu2021 §Empirical Experiments',
    'lora-keeps-more-at-matched-accuracy': 'course §forgetting at matched task accuracy',
    'distilbert-imdb-93': 'tle §HuggingFace Transformers: Transfer Learning Made Practical',
    'few-shot-frozen-wins': 'cw §When to Use Transfer Learning',
    'frozen-raw-breaks': 'asktodo §Common Pitfalls and How to Avoid Them',
    'frozen-raw-breaks-plain': 'asktodo §Common Pitfalls and How to Avoid Them',
    'probe-standardising-hides': 'course §preprocessing',
    'raw-costs': 'asktodo §Common Pitfalls and How to Avoid Them',
    'no-norm-costs': 'tle §Lessons Learned: What Practitioners Get Wrong the First Time',
    'twice-costs': 'tle §Lessons Learned: What Practitioners Get Wrong the First Time',
    'probe-less-sensitive': 'course §preprocessing',
    'dropout-flips': 'tle §Lessons Learned: What Practitioners Get Wrong the First Time',
    'bn-batch-of-one': 'tle §Lessons Learned: What Practitioners Get Wrong the First Time',
    'frozen-bn-drift': 'course §BatchNorm statistics drift',
    'negative-transfer-frozen': 'asktodo §Common Pitfalls and How to Avoid Them',
    'negative-transfer-mismatch-frozen': 'tle §Negative Transfer, Catastrophic Forgetting, and When to Walk Away',
    'negative-transfer-narrow-source': 'course §a control',
    'negative-transfer-gap-closes': 'tle §The 2×2 Decision Matrix: Dataset Size Meets Domain Similarity',
    'negative-transfer-finetuned': 'asktodo §Common Pitfalls and How to Avoid Them',
    'matching-source-helps': 'course §a control',
    'peeking-inflates': 'course §evaluation hygiene',
    'duplicates-inflate': 'course §evaluation hygiene',
}


def for_claim(claim_id: str) -> str:
    """The registered source reference of a claim id (exact id first, then the first matching pattern)."""
    if claim_id in CLAIM_SOURCES:
        return CLAIM_SOURCES[claim_id]
    for pattern, ref in CLAIM_SOURCES.items():
        if fnmatchcase(claim_id, pattern):
            return ref
    raise ValueError(f"Claim {claim_id!r} has no source in labkit.sources.CLAIM_SOURCES: add it there (a registered "
                     "key and section), or pass source= when declaring the claim.")

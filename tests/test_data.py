"""Data sets and loaders: real files, few-shot sampling, class splits, clear errors."""
import numpy as np
import pytest
import torch

from labkit import data
from labkit.assets import Preprocessing


def test_fashion_mnist_from_debian_files():
    train, test = data.fashion_mnist("train"), data.fashion_mnist("test")
    assert train.images.shape == (60000, 28, 28) and len(test) == 10000
    assert train.classes[9] == "Ankle boot" and set(np.unique(train.labels)) == set(range(10))


def test_few_shot_is_stratified_and_seeded():
    ds = data.digits("train")
    a, b = ds.few_shot(5, seed=1), ds.few_shot(5, seed=1)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.images, b.images)
    assert np.bincount(a.labels).tolist() == [5] * 10
    assert not np.array_equal(ds.few_shot(5, seed=2).images, a.images)
    with pytest.raises(ValueError, match="only"):
        ds.few_shot(10_000)


def test_split_is_disjoint_and_stratified():
    ds = data.lfw_subset("all")
    rest, held = ds.split(0.25, seed=0)
    assert len(rest) + len(held) == 200 and np.bincount(held.labels).tolist() == [25, 25]
    assert data.digits("train").fingerprint() != data.digits("test").fingerprint()


def test_class_split_relabels():
    ds = data.fashion_mnist("test")
    a, b = data.class_split(ds, range(5), range(5, 10))
    assert set(a.labels) == set(range(5)) == set(b.labels)
    assert b.classes[0] == "Sandal" and len(a) + len(b) == len(ds)
    with pytest.raises(ValueError, match="overlap"):
        data.class_split(ds, [0, 1], [1, 2])


def test_loader_makes_normalised_three_channel_batches():
    pre = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), size=32)
    ds = data.digits("train").few_shot(3)
    x, y = next(iter(data.make_loader(ds, pre, batch_size=8)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0 and torch.equal(x[:, 0], x[:, 1])
    assert len(data.make_loader(ds, pre, batch_size=8)) == 4


@pytest.mark.parametrize("interpolation, size", [("bilinear", 64), ("bicubic", 112), ("bilinear", 20)])
@pytest.mark.parametrize("augment", [False, "flip", "article"])
def test_grayscale_batches_are_resized_once_and_equal_three_resized_channels(interpolation, size, augment):
    """A grayscale batch is resized as one channel and then copied to three: the same pixels, to the bit, as
    resizing three copies (the old order, three times the work), with and without each augmentation."""
    import torch.nn.functional as F

    from labkit.data.loaders import augment_like_the_article

    pre = Preprocessing(mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3), size=size, interpolation=interpolation)
    images = data.fashion_mnist("test").images[:24]
    loader = data.make_loader(data.fashion_mnist("test").subset(np.arange(24)), pre, batch_size=24, augment=augment)
    got = loader.transform(images, torch.Generator().manual_seed(3))

    generator = torch.Generator().manual_seed(3)
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0).expand(-1, 3, -1, -1)  # the old order
    if augment == "flip":
        flip = torch.rand(24, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    x = F.interpolate(x, size=(size, size), mode=interpolation, align_corners=False, antialias=28 > size).clamp_(0, 1)
    if augment == "article":
        x = augment_like_the_article(x, generator)
    assert got.shape == (24, 3, size, size) and got.is_contiguous()
    assert torch.equal(got, pre.normalize(x))


def test_image_folder_bring_your_own_data(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    ds = data.load_dataset(str(tmp_path), split="all", size=32)
    assert ds.images.shape == (6, 32, 32, 3) and ds.classes == ["cats", "dogs"]


def _write_images(folder, counts: dict, rng, value_of=None):
    """folder/<class>/<i>.png for each class; each image's pixels carry a value that tells where it came from."""
    from PIL import Image

    for cls, n in counts.items():
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            value = value_of(cls, i) if value_of else int(rng.integers(0, 255))
            Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(folder / cls / f"{i}.png")


def test_flat_folder_is_split_70_30_without_overlap(tmp_path):
    rng = np.random.default_rng(0)
    _write_images(tmp_path, {"cats": 10, "dogs": 10}, rng, value_of=lambda cls, i: 10 * i + (cls == "dogs"))
    train = data.load_dataset(str(tmp_path), split="train", size=16)
    test = data.load_dataset(str(tmp_path), split="test", size=16)
    assert len(train) == 14 and len(test) == 6 and train.classes == test.classes == ["cats", "dogs"]
    assert train.class_counts() == {"cats": 7, "dogs": 7}
    seen = {(int(im[0, 0, 0]), int(y)) for im, y in zip(train.images, train.labels)}
    assert not seen & {(int(im[0, 0, 0]), int(y)) for im, y in zip(test.images, test.labels)}
    again = data.load_dataset(str(tmp_path), split="test", size=16)
    assert again.fingerprint() == test.fingerprint()  # the same split every time, whatever the seed of the run


@pytest.mark.parametrize("held_out", ["val", "test"])
def test_train_val_layout_uses_its_splits_not_the_whole_folder(tmp_path, held_out):
    """The PyTorch tutorial's layout: train/ + val/. The test set is val/ when there is no test/, labelled by class."""
    rng = np.random.default_rng(0)
    _write_images(tmp_path / "train", {"ants": 4, "bees": 5}, rng, value_of=lambda cls, i: 0)
    _write_images(tmp_path / held_out, {"ants": 2, "bees": 3}, rng, value_of=lambda cls, i: 200)
    train = data.load_dataset(str(tmp_path), split="train", size=16)
    test = data.load_dataset(str(tmp_path), split="test", size=16)
    assert train.classes == test.classes == ["ants", "bees"]  # never ['train', 'val']
    assert len(train) == 9 and len(test) == 5 and test.class_counts() == {"ants": 2, "bees": 3}
    assert int(train.images.max()) == 0 and int(test.images.min()) == 200  # no training image in the test set
    assert data.split_folders(tmp_path)["test"] == held_out


def test_split_folders_keep_the_training_label_numbers(tmp_path):
    rng = np.random.default_rng(0)
    _write_images(tmp_path / "train", {"a": 2, "b": 2, "c": 2}, rng)
    _write_images(tmp_path / "test", {"c": 2}, rng)  # a test folder that lacks two classes
    test = data.load_dataset(str(tmp_path), split="test", size=16)
    assert test.classes == ["a", "b", "c"] and set(test.labels.tolist()) == {2}


def test_split_layout_problems_are_explained(tmp_path):
    rng = np.random.default_rng(0)
    _write_images(tmp_path / "train", {"a": 2, "b": 2}, rng)
    with pytest.raises(data.DataUnavailableError, match="no test/ or val/ folder"):
        data.load_dataset(str(tmp_path), split="test")
    _write_images(tmp_path / "val", {"a": 1, "z": 1}, rng)
    with pytest.raises(data.DataUnavailableError, match=r"class folder\(s\) \['z'\]"):
        data.load_dataset(str(tmp_path), split="test")
    only_test = tmp_path / "other"
    _write_images(only_test / "test", {"a": 1}, rng)
    with pytest.raises(data.DataUnavailableError, match="no train/ folder"):
        data.load_dataset(str(only_test), split="train")


def test_missing_and_unknown_datasets_are_explained(tmp_path, monkeypatch):
    with pytest.raises(data.DataUnavailableError, match="No image folder"):
        data.load_dataset(str(tmp_path / "nope"))
    with pytest.raises(KeyError, match="Did you mean 'fashion_mnist'"):
        data.load_dataset("fashion-mnist")
    monkeypatch.setattr(data.images, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist("test")


def test_text_corpora_and_csv(tmp_path):
    ng = data.newsgroups(["sci.space", "rec.autos"], split="test")
    assert ng.classes == ["sci.space", "rec.autos"] and len(ng) > 500
    tweets = data.election_tweets()
    assert len(tweets) == 6444 and len(tweets.classes) == 2
    f = tmp_path / "reviews.csv"
    f.write_text("text,label\ngreat film,pos\nawful plot,neg\nloved it,pos\n")
    ds = data.load_text_dataset(str(f), "all")
    assert ds.classes == ["neg", "pos"] and ds.labels.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="no column"):
        data.text_file(f, text_column="review")


def test_every_loader_shuffles_by_one_epoch_seeded_rule():
    """Images, texts and cached features: epoch e of a loader with seed s is torch.randperm(n) from seed s + e."""
    from labkit.features import FeatureLoader

    n, seed = 23, 5
    expected = [torch.randperm(n, generator=torch.Generator().manual_seed(seed + e)).tolist() for e in range(3)]
    images = data.ImageDataset(np.zeros((n, 4, 4), dtype=np.uint8), np.arange(n), [str(i) for i in range(n)])
    image_loader = data.make_loader(images, Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, size=4), batch_size=4,
                                    shuffle=True, seed=seed)
    texts = data.TextDataset([str(i) for i in range(n)], np.arange(n), [str(i) for i in range(n)])
    text_loader = data.make_text_loader(texts, lambda t, **kw: {"n": len(t)}, batch_size=4, shuffle=True, seed=seed)
    feature_loader = FeatureLoader(np.zeros((n, 2)), np.arange(n), batch_size=4, shuffle=True, seed=seed)
    for loader, labels in ((image_loader, lambda b: b[1]), (text_loader, lambda b: b["labels"]),
                           (feature_loader, lambda b: b[1])):
        assert [[i for b in loader for i in labels(b).tolist()] for _ in range(3)] == expected, type(loader).__name__
    assert data.epoch_order(n, False, seed, 2)[0].tolist() == list(range(n))


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_one_text_dispatcher_splits_a_file_70_30_by_one_rule(tmp_path, suffix, sep):
    from labkit import text

    assert not hasattr(text, "load_corpus")  # the one dispatcher has one name: data.load_text_dataset
    path = tmp_path / f"reviews{suffix}"
    rows = [f"review number {i}{sep}{'good' if i % 4 else 'bad'}" for i in range(40)]
    path.write_text(f"body{sep}sentiment\n" + "\n".join(rows) + "\n", encoding="utf-8")
    columns = dict(text_column="body", label_column="sentiment")
    whole = data.load_text_dataset(str(path), "all", **columns)
    train = data.load_text_dataset(str(path), "train", **columns)
    test = data.load_text_dataset(str(path), "test", None, **columns)
    # the rule: 30 % of each class held out by the stratified split with seed 0, the same on every call
    rest, held = whole.split(0.3, seed=0)
    assert train.texts == rest.texts and test.texts == held.texts and len(whole) == 40
    assert (len(train), len(test)) == (28, 12) and test.class_counts() == {"bad": 3, "good": 9}
    assert (train.name, test.name) == ("reviews-train", "reviews-test")
    assert data.load_text_dataset(str(path), "test", **columns).texts == test.texts
    with pytest.raises(ValueError, match="split must be"):
        data.load_text_dataset(str(path), "validation", **columns)


def test_newsgroup_cleaning_removes_attributions_and_addresses():
    post = ("re re dmorph in article apr usl edu jna ucs usl edu armstrong jay n writes can someone tell me where "
            "i can ftp dmorph try wuarchive wustl edu it is there")
    # an address is up to three words before its domain, so a word next to one can go with it ("try")
    assert data.clean_newsgroup_text(post) == "dmorph can someone tell me where i can ftp dmorph it is there"
    plain = "voice input vendor information needed hello i am looking to add voice input"
    assert data.clean_newsgroup_text(plain) == plain  # a post without either is left alone
    cleaned = data.newsgroups(["sci.space", "rec.autos"], split="test")
    raw = data.newsgroups(["sci.space", "rec.autos"], split="test", clean=False)
    with_attribution = sum(" in article " in f" {t} " for t in raw.texts)
    assert with_attribution > 100 and sum(" in article " in f" {t} " for t in cleaned.texts) < with_attribution / 5
    assert len(cleaned) <= len(raw) and all(cleaned.texts) and cleaned.classes == raw.classes

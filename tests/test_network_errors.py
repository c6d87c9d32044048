"""Only a network failure is reported as "no internet"; any other failure surfaces as what actually failed."""
import socket
import tarfile
import urllib.error

import pytest

from labkit import assets, data, text
from labkit.assets import AssetUnavailableError, is_network_error
from labkit.data import DataUnavailableError


@pytest.fixture
def online(monkeypatch, tmp_path):
    for flag in ("LABKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABKIT_IMDB", raising=False)
    return tmp_path


def test_which_errors_count_as_network_errors():
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert is_network_error(refused) and is_network_error(socket.gaierror(-2, "Name or service not known"))
    assert is_network_error(TimeoutError("timed out"))
    try:  # a library's own error raised from the connection failure (transformers' OSError does this)
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as err:
            raise OSError("We couldn't connect to the Hub") from err
    except OSError as wrapped:
        assert is_network_error(wrapped)
    not_found = urllib.error.HTTPError("https://example.org/w.pth", 404, "Not Found", {}, None)
    for err in (not_found, PermissionError(13, "Permission denied"), RuntimeError("invalid hash value"),
                tarfile.ReadError("not a gzip file"), TypeError("unexpected keyword argument 'filter'")):
        assert not is_network_error(err), err


def _fake_download(error):
    def download(*args, **kwargs):
        raise error
    return download


def test_torchvision_weights_no_network_vs_bad_download(online, monkeypatch):
    monkeypatch.setattr(assets.torch.hub, "download_url_to_file",
                        _fake_download(urllib.error.URLError(socket.gaierror(-3, "Temporary failure"))))
    with pytest.raises(AssetUnavailableError, match="no internet .*URLError.*backbone='efficientnet_lite0'") as info:
        assets.load_backbone("resnet18")
    assert isinstance(info.value.__cause__, urllib.error.URLError)

    monkeypatch.setattr(assets.torch.hub, "download_url_to_file",
                        _fake_download(RuntimeError('invalid hash value (expected "f37072fd", got "00ff")')))
    with pytest.raises(RuntimeError, match="invalid hash value") as info:
        assets.load_backbone("resnet18")
    assert not isinstance(info.value, AssetUnavailableError)  # not mistaken for "no internet"


def test_hub_model_no_network_vs_other_failure(online, monkeypatch):
    class Factory:
        error: Exception

        @classmethod
        def from_pretrained(cls, source, local_files_only=False, **kwargs):
            if local_files_only:
                raise OSError(f"{source} is not in the local cache")
            raise cls.error

    Factory.error = OSError("We couldn't connect to 'https://huggingface.co'")
    Factory.error.__cause__ = ConnectionError("Network is unreachable")
    with pytest.raises(AssetUnavailableError, match="no internet.*model_name='minilm'"):
        assets._from_pretrained(Factory, "bert-base-uncased", False, "bert-base-uncased")
    Factory.error = ValueError("Unrecognized model in bert-base-uncased: config.json has no model_type")
    with pytest.raises(ValueError, match="Unrecognized model"):
        assets._from_pretrained(Factory, "bert-base-uncased", False, "bert-base-uncased")


def test_imdb_no_network_vs_corrupt_archive(online, monkeypatch):
    monkeypatch.setattr(data.corpora, "_download_imdb", _fake_download(urllib.error.URLError(ConnectionRefusedError())))
    with pytest.raises(DataUnavailableError, match="there is no internet") as info:
        text.imdb("train", root=online / "missing")
    assert isinstance(info.value.__cause__, urllib.error.URLError)

    monkeypatch.setattr(data.corpora, "_download_imdb", _fake_download(tarfile.ReadError("not a gzip file")))
    with pytest.raises(RuntimeError, match="Downloading IMDB into .* failed: ReadError: not a gzip file") as info:
        text.imdb("train", root=online / "missing")
    assert not isinstance(info.value, DataUnavailableError) and isinstance(info.value.__cause__, tarfile.ReadError)


def test_fashion_mnist_no_network_vs_local_failure(online, monkeypatch):
    import torchvision

    monkeypatch.setattr(data.images, "DEBIAN_FASHION_MNIST", online / "absent")
    monkeypatch.chdir(online)
    mirrors = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://mirror/, got:\n"
                           "<urlopen error [Errno -3] Temporary failure in name resolution>\n")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _fake_download(mirrors))
    with pytest.raises(DataUnavailableError, match="could not be downloaded") as info:
        data.fashion_mnist("train")
    assert info.value.__cause__ is mirrors

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _fake_download(PermissionError(13, "Permission denied")))
    with pytest.raises(RuntimeError, match="Downloading Fashion-MNIST .* failed: PermissionError"):
        data.fashion_mnist("train")


def test_imdb_extraction_refuses_members_outside_the_folder(tmp_path, monkeypatch):
    import io

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        payload = b"x"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # the fallback for Pythons without filters
    with tarfile.open(archive) as tar, pytest.raises(tarfile.ExtractError, match="escaped"):
        data.corpora._safe_extract(tar, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()

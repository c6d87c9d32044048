"""Display helpers: tables show whole sentences (claims, verdicts), not pandas' 50-character cut."""
import IPython.display

from labkit.viz import show_table

LONG = "lr 2e-5 leaves the pretrained encoder intact; 1e-3 corrupts its features for other topics"


def test_show_table_renders_long_cells_whole(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append((obj._repr_html_(), repr(obj))))
    show_table([{"claim": LONG, "verdict": "holds"}])
    html, text = shown[0]
    assert LONG in html and "..." not in html
    assert "..." not in text


def test_show_table_prints_whole_cells_without_ipython(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ipython(name, *args, **kwargs):
        if name.startswith("IPython"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipython)
    show_table([{"claim": LONG, "verdict": "holds"}])
    assert LONG in capsys.readouterr().out


def test_show_table_has_no_index_column(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append((obj._repr_html_(), repr(obj))))
    show_table([{"strategy": "two-stage", "acc": 0.826}, {"strategy": "scratch", "acc": None}])
    html, text = shown[0]
    assert text.splitlines()[0].split() == ["strategy", "acc"]  # no "0", "1" column before the data
    assert text.splitlines()[1].split()[0] == "two-stage" and "<th></th>" not in html and "<th>0</th>" not in html
    assert text.splitlines()[2].split() == ["scratch", "-"]  # a missing value reads as a dash, not NaN

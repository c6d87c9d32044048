"""scripts/compare_outputs.py lists every cell whose outputs differ, under the same sanitizing as nbval."""
import importlib.util
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_outputs.py"
spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
compare_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_outputs)


def notebook(path: Path, *texts: str) -> Path:
    nb = nbformat.v4.new_notebook()
    for i, text in enumerate(texts):
        cell = nbformat.v4.new_code_cell(f"print({i})")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    ignored = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint(time)")
    ignored.outputs = [nbformat.v4.new_output("stream", name="stdout", text=str(path))]
    nb.cells.append(ignored)
    nbformat.write(nb, path)
    return path


def test_reports_every_differing_cell_and_masks_like_nbval_on_another_cpu(tmp_path, capsys):
    recorded = notebook(tmp_path / "a.ipynb", "[holds] Claim. effect +0.050 [+0.010, +0.090]\n", "3 epochs\n",
                        "same text\n")
    new = notebook(tmp_path / "b.ipynb",
                   "[unresolved] Claim. effect +0.040 [-0.001, +0.081]; about 900 test items would settle it "
                   "(here 500)\n", "5 epochs\n", "same text\n")
    assert compare_outputs.main([str(recorded), str(new)]) == 1
    out = capsys.readouterr().out
    assert "code cell 0" in out and "code cell 1" in out and "code cell 2" not in out and "code cell 3" not in out
    assert "'[holds]'" in out and "'[unresolved]'" in out
    assert compare_outputs.main([str(recorded), str(new), "--masked"]) == 0
    reworded = notebook(tmp_path / "c.ipynb", "[holds] Another claim. effect +0.050 [+0.010, +0.090]\n",
                        "3 epochs\n", "same text\n")
    assert compare_outputs.main([str(recorded), str(reworded), "--masked"]) == 1
    assert "code cell 0" in capsys.readouterr().out

"""``yolo-attn blocks``: the registry listing, costs of attention blocks built from ``yaml_example``,
the markdown table and the generated page docs/blocks.md."""

import json

import pytest

from tests.conftest import ROOT
from yolo_attn.cli import main
from yolo_attn.errors import UserError
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.catalog import (
    DOCS_PAGE,
    README_END,
    README_START,
    REGENERATE_DOCS,
    block_row,
    build_example,
    docs_drift,
    markdown_table,
    paper_line,
    table_cells,
    update_readme,
)
from yolo_attn.nn.registry import all_blocks, lookup
from yolo_attn.nn.summary import count_params


def run_json(capsys, *argv: str) -> list[dict]:
    assert main(["blocks", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["blocks"]


def test_lists_every_registered_block(capsys):
    rows = run_json(capsys, "--no-cost")
    assert [r["name"] for r in rows] == [s.name for s in all_blocks()]
    by_name = {r["name"]: r for r in rows}
    double = by_name["DoubleAttentionLayer"]
    assert double["aliases"] == ["DoubleAttention"] and double["attention"] is True
    assert double["signature"] == "[c_m, c_n, reconstruct=False]"
    assert double["paper"] == "Double attention block (Chen et al., A2-Nets, NeurIPS 2018, arXiv 1810.11579)."
    assert by_name["CBAM"]["signature"] == "[c2=c1, ratio=16, kernel_size=7]"
    assert by_name["Conv"]["attention"] is False and by_name["Conv"]["params"] is None
    assert all(r["params"] is None for r in rows)  # --no-cost


def test_attention_costs_at_the_reference_map(capsys):
    rows = run_json(capsys, "CBAM", "DoubleAttention", "--repeats", "1")
    cbam, double = rows
    assert (cbam["name"], double["name"]) == ("CBAM", "DoubleAttentionLayer")
    assert cbam["params"] == count_params(CBAM(256)) == 8_290
    assert double["params"] == 98_816
    # A2: three 1x1 convs on 256x40x40 and the reconstruction, plus two (128 x 64 x 1600) matmuls, in GFLOPs
    convs = 2 * 1600 * 256 * (128 + 64 + 64) + 2 * 1600 * 128 * 256
    assert double["gflops"] == pytest.approx((convs + 2 * 2 * 128 * 64 * 1600) / 1e9)
    assert cbam["cpu_ms"] > 0 and cbam["error"] is None


def test_unknown_name_is_a_user_error(capsys):
    assert main(["blocks", "CBAMM"]) == 2
    assert "unknown block 'CBAMM'" in capsys.readouterr().err


def test_build_example_adapts_args_to_the_channels():
    assert build_example(lookup("CBAM"), 128).channel_attention.f1.in_channels == 128
    double = build_example(lookup("DoubleAttention"), 512)
    assert (double.in_channels, double.c_m, double.c_n, double.reconstruct) == (512, 128, 64, True)


def test_paper_line_drops_the_yaml_part():
    assert paper_line(CBAM) == "Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv 1807.06521)."


def test_markdown_table_into_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Blocks\n\n{README_START}\nold table\n{README_END}\n\ntail\n")
    assert main(["blocks", "CBAM", "Conv", "--repeats", "0", "--readme", str(readme)]) == 0
    table = capsys.readouterr().out.strip()
    assert table.splitlines()[0].startswith("| Block | Aliases | YAML args | Paper | Params |")
    assert "| `CBAM` |  | `[c2=c1, ratio=16, kernel_size=7]` |" in table and "| 8,290 |" in table
    assert readme.read_text() == f"# x\n\n## Blocks\n\n{README_START}\n{table}\n{README_END}\n\ntail\n"
    plain = tmp_path / "plain.md"
    plain.write_text("# no markers\n")
    with pytest.raises(UserError, match="markers"):
        update_readme(plain, table)


def test_docs_blocks_page_is_in_sync_with_the_registry():
    """docs/blocks.md's names, aliases, YAML args and papers are the registry's; the measured columns are not
    compared (CPU times differ run to run)."""
    page = (ROOT / DOCS_PAGE).read_text(encoding="utf-8")
    drift = docs_drift(page, all_blocks())
    assert not drift, (f"{DOCS_PAGE} is out of date with the block registry for {', '.join(drift)}; "
                       f"regenerate it from the repository root with: {REGENERATE_DOCS}")
    assert REGENERATE_DOCS in page.split(README_START)[0]  # the page says how to regenerate it
    rows = table_cells(page)
    for name in ("GAMAttention", "CBAM", "BAM", "DoubleAttentionLayer", "CloAttention"):
        assert rows[name][4], f"{name} has no parameter count in {DOCS_PAGE}; regenerate with: {REGENERATE_DOCS}"


def test_docs_drift_names_what_changed():
    specs = [lookup("CBAM"), lookup("Conv")]
    page = f"{README_START}\n{markdown_table([block_row(s, cost=False) for s in specs])}\n{README_END}\n"
    assert docs_drift(page, specs) == []
    assert docs_drift(page.replace("ECCV 2018", "ECCV 2019"), specs) == ["CBAM"]
    assert docs_drift(page, [lookup("CBAM")]) == ["Conv (not registered)"]
    assert docs_drift(page, [lookup("CBAM"), lookup("SE"), lookup("Conv")]) == ["SE"]
    assert docs_drift(page, specs[::-1]) == ["(rows out of order)"]


def test_write_docs_keeps_the_times_of_unchanged_blocks(tmp_path, capsys):
    page = tmp_path / "blocks.md"
    assert main(["blocks", "CBAM", "Conv", "--repeats", "1", "--write-docs", str(page)]) == 0
    assert f"wrote {page}: 2 blocks" in capsys.readouterr().out
    text = page.read_text()
    assert text.startswith("# Blocks\n") and f"```bash\n{REGENERATE_DOCS}\n```" in text
    cbam = table_cells(text)["CBAM"]
    assert cbam[4] == "8,290" and float(cbam[6]) > 0 and table_cells(text)["Conv"][4:] == ["", "", ""]
    page.write_text(text.replace(f"| {cbam[6]} |", "| 123.45 |"))  # a time from an earlier run: kept
    assert main(["blocks", "CBAM", "Conv", "--repeats", "1", "--write-docs", str(page)]) == 0
    assert table_cells(page.read_text())["CBAM"][6] == "123.45"
    page.write_text(page.read_text().replace("| 8,290 |", "| 8,291 |"))  # the block changed: timed again
    assert main(["blocks", "CBAM", "Conv", "--repeats", "1", "--write-docs", str(page)]) == 0
    assert table_cells(page.read_text())["CBAM"][4:6] == ["8,290", cbam[5]]
    assert table_cells(page.read_text())["CBAM"][6] != "123.45"


def test_write_docs_of_some_blocks_needs_a_path(capsys):
    assert main(["blocks", "CBAM", "--write-docs"]) == 2
    assert "needs a PATH" in capsys.readouterr().err
